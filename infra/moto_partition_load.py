"""The DynamoDB partition load record of the loopback AWS server (infra/moto_server.py,
with GROUNDWORK_MOTO_RECORD_KEYS=1).

It records, per DynamoDB partition, the accesses the requests make and the capacity units
DynamoDB would charge them; the server serves the record as JSON at GET /groundwork/keys (DELETE /groundwork/keys clears it, so a harness can measure
one phase). DynamoDB serves each partition, of the table and of each global secondary
index, at most 3,000 read and 1,000 write units a second and throttles beyond; moto does
not throttle, so this record is what shows a key that would run hot. Each entry is
(kind "read"/"write", index "table" or the index's name, partition key value) with `ops`
(item accesses; a Query or Scan request is one) and `units`, by DynamoDB's rules with
moto's item size (attribute names plus values, in bytes) and the item images moto holds
before and after the request: a write is ceil(size / 1 KB), at least 1, of the larger
image, twice in TransactWriteItems; a read ceil(size / 4 KB), at least 1, twice in
TransactGetItems (and for TransactWriteItems' ConditionCheck), half when eventually
consistent. A write also writes each global secondary index the item was or is in: one
write where its index key stays and a projected value changed, else a delete at the old
index partition and a put at the new. A Query is charged ceil(size of the items it
returns / 4 KB) on the partition its key condition names; a Scan on partition "<scan>". A
write refused by its condition, or each item of a cancelled transaction, is charged once
on its table partition by the stored item's size. PartiQL requests are not recorded.
"""

import copy
import json
import os
import re
import threading
import traceback
from dataclasses import dataclass
from math import ceil
from typing import Any

from moto.core.responses import BaseResponse
from moto.dynamodb.exceptions import ResourceNotFoundException
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import SecondaryIndex, Table
from moto.dynamodb.models.utilities import bytesize
from moto.iam.models import get_account_id_from

# The DynamoDB partition record: (kind, index, partition key value) -> [ops, units].
KEYS_LOCK = threading.Lock()
KEYS: dict[tuple[str, str, str], list[float]] = {}
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
# A transaction reads or writes each item twice (prepare and commit); an eventually
# consistent read costs half a strongly consistent one.
TRANSACTION = 2.0
EVENTUAL = 0.5
SCAN_PARTITION = "<scan>"
UNKNOWN_PARTITION = "<unknown>"
# A key condition's hash key equality, `pk = :v` or `#pk = :v` (the only form DynamoDB takes).
KEY_EQUALITY = re.compile(r"([#\w]+)\s*=\s*(:\w+)")


@dataclass
class ItemAccess:
    """An item a DynamoDB request reads or writes, with the item as stored before it."""

    kind: str  # "read" or "write"
    table: Table
    hash_key: DynamoType
    range_key: DynamoType | None
    factor: float  # TRANSACTION, EVENTUAL or 1
    before: Item | None


def note_access(kind: str, index: str, partition: str, units: float) -> None:
    with KEYS_LOCK:
        counters = KEYS.setdefault((kind, index, partition), [0, 0.0])
        counters[0] += 1
        counters[1] += units


def clear_keys_record() -> None:
    with KEYS_LOCK:
        KEYS.clear()


def keys_record() -> list[dict[str, Any]]:
    with KEYS_LOCK:
        return [
            {"kind": kind, "index": index, "partition": partition, "ops": int(ops), "units": units}
            for (kind, index, partition), (ops, units) in sorted(KEYS.items())
        ]


def read_units(size: int) -> int:
    return max(1, ceil(size / READ_UNIT_BYTES))


def write_units(size: int) -> int:
    return max(1, ceil(size / WRITE_UNIT_BYTES))


def size_of(item: Item | None) -> int:
    return item.size() if item else 0


def wire_size(attributes: dict[str, Any]) -> int:
    """An item's size, as moto sizes a stored one, from its attributes in the wire format."""
    return sum(bytesize(name) + DynamoType(value).size() for name, value in attributes.items())


def partition_value(value: DynamoType) -> str:
    return str(next(iter(value.to_json().values())))


def dynamodb_backend(environ) -> DynamoDBBackend:
    """The backend moto serves the request from: account and region as moto's BaseResponse
    derives them (environment, header or access key; URL, user agent or signature)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if "MOTO_ACCOUNT_ID" in os.environ:
        account = os.environ["MOTO_ACCOUNT_ID"]
    elif "HTTP_X_MOTO_ACCOUNT_ID" in environ:
        account = environ["HTTP_X_MOTO_ACCOUNT_ID"]
    else:
        key = BaseResponse.access_key_regex.search(authorization)
        account = get_account_id_from(key.group("access_key") if key else "AKIAEXAMPLE")
    url = environ.get("HTTP_HOST", "") + environ.get("PATH_INFO", "")
    found = BaseResponse.region_regex.search(url) or BaseResponse.region_from_useragent_regex.search(
        environ.get("HTTP_USER_AGENT", "")
    )
    if found:
        region = found.group("region")
    elif "AWS4" in authorization:
        region = authorization.split(",")[0].split("/")[2]
    else:
        region = BaseResponse.default_region
    return dynamodb_backends[account][region]


def table_named(backend: DynamoDBBackend, name: str) -> Table | None:
    try:
        return backend.get_table(name)
    except ResourceNotFoundException:
        return None


def stored(table: Table, hash_key: DynamoType, range_key: DynamoType | None) -> Item | None:
    """A copy of the item as moto holds it now (moto updates an item in place)."""
    item = table.get_item(hash_key, range_key)
    return copy.deepcopy(item) if item else None


def batch_written(write: dict[str, Any]) -> dict[str, Any]:
    """A BatchWriteItem entry's item (a put) or key (a delete)."""
    if "PutRequest" in write:
        return write["PutRequest"].get("Item", {})
    return write.get("DeleteRequest", {}).get("Key", {})


def item_requests(
    operation: str, request: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any], float]]:
    """(kind, table name, key or whole item, unit factor) for each item the request names."""
    consistency = 1.0 if request.get("ConsistentRead") else EVENTUAL
    table = request.get("TableName", "")
    if operation == "GetItem":
        return [("read", table, request.get("Key", {}), consistency)]
    if operation == "PutItem":
        return [("write", table, request.get("Item", {}), 1.0)]
    if operation in ("UpdateItem", "DeleteItem"):
        return [("write", table, request.get("Key", {}), 1.0)]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return [
            ("read" if action in ("Get", "ConditionCheck") else "write", spec.get("TableName", ""),
             spec.get("Item") or spec.get("Key", {}), TRANSACTION)
            for entry in request.get("TransactItems", [])
            for action, spec in entry.items()
        ]
    if operation == "BatchGetItem":
        return [
            ("read", name, key, 1.0 if spec.get("ConsistentRead") else EVENTUAL)
            for name, spec in request.get("RequestItems", {}).items()
            for key in spec.get("Keys", [])
        ]
    if operation == "BatchWriteItem":
        return [
            ("write", name, batch_written(write), 1.0)
            for name, writes in request.get("RequestItems", {}).items()
            for write in writes
        ]
    return []


def item_access(
    backend: DynamoDBBackend, kind: str, table_name: str, attributes: dict[str, Any], factor: float
) -> ItemAccess | None:
    table = table_named(backend, table_name)
    if table is None or any(name not in attributes for name in table.table_key_attrs):
        return None  # moto refuses the request itself
    hash_key = DynamoType(attributes[table.hash_key_attr])
    range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
    return ItemAccess(kind, table, hash_key, range_key, factor, stored(table, hash_key, range_key))


def hash_attribute(index: SecondaryIndex) -> str:
    return next(key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH")


def index_entry(index: SecondaryIndex, item: Item | None) -> Item | None:
    """The item as the index holds it, if it is in the (possibly sparse) index."""
    if item is None or any(name not in item.attrs for name in index.schema_key_attrs):
        return None
    return index.project(item)


def note_index_write(index: SecondaryIndex, old: Item | None, new: Item | None) -> None:
    if old and new and all(old.attrs[name] == new.attrs[name] for name in index.schema_key_attrs):
        # The entry stays: one write if a projected value changed, none otherwise.
        if old.to_json() != new.to_json():
            note_access("write", index.name, partition_value(new.attrs[hash_attribute(index)]),
                        write_units(max(old.size(), new.size())))
        return
    # The index key changed (or the item entered or left the index): delete old, put new.
    for entry in (old, new):
        if entry:
            note_access("write", index.name, partition_value(entry.attrs[hash_attribute(index)]),
                        write_units(entry.size()))


def note_item(access: ItemAccess) -> None:
    partition = partition_value(access.hash_key)
    if access.kind == "read":
        note_access("read", "table", partition, read_units(size_of(access.before)) * access.factor)
        return
    after = access.table.get_item(access.hash_key, access.range_key)
    units = write_units(max(size_of(access.before), size_of(after))) * access.factor
    note_access("write", "table", partition, units)
    for index in access.table.global_indexes:
        note_index_write(index, index_entry(index, access.before), index_entry(index, after))


def note_refused(access: ItemAccess) -> None:
    """A write refused by its condition, or an item of a cancelled transaction, still costs
    its table partition the item's units, once."""
    size = size_of(access.before)
    units = read_units(size) if access.kind == "read" else write_units(size)
    note_access(access.kind, "table", partition_value(access.hash_key), units)


def queried_partition(request: dict[str, Any], hash_name: str | None) -> str:
    """The hash key value a Query's key condition names (expression or legacy KeyConditions)."""
    names = request.get("ExpressionAttributeNames", {})
    values = request.get("ExpressionAttributeValues", {})
    for name, value in KEY_EQUALITY.findall(request.get("KeyConditionExpression", "")):
        if hash_name in (None, names.get(name, name)) and value in values:
            return partition_value(DynamoType(values[value]))
    for name, condition in request.get("KeyConditions", {}).items():
        if hash_name in (None, name) and condition.get("ComparisonOperator") == "EQ":
            return partition_value(DynamoType(condition["AttributeValueList"][0]))
    return UNKNOWN_PARTITION


def queried_hash_name(table: Table | None, index_name: str | None) -> str | None:
    if table is None:
        return None
    if not index_name:
        return table.hash_key_attr
    for index in table.indexes + table.global_indexes:
        if index.name == index_name:
            return hash_attribute(index)
    return None


def note_search(
    operation: str, request: dict[str, Any], backend: DynamoDBBackend, reply: dict[str, Any]
) -> None:
    """A Query's or Scan's one request, charged by the size of the items it returned."""
    index_name = request.get("IndexName")
    if operation == "Query":
        table = table_named(backend, request.get("TableName", ""))
        partition = queried_partition(request, queried_hash_name(table, index_name))
    else:
        partition = SCAN_PARTITION
    size = sum(wire_size(item) for item in reply.get("Items", []))
    consistency = 1.0 if request.get("ConsistentRead") else EVENTUAL
    note_access("read", index_name or "table", partition, read_units(size) * consistency)


def note_response(
    operation: str, request: dict[str, Any], backend: DynamoDBBackend,
    accesses: list[ItemAccess], status: str, error: str, body: bytes,
) -> None:
    if status.startswith("200"):
        if operation in ("Query", "Scan"):
            note_search(operation, request, backend, json.loads(body or b"{}"))
        for access in accesses:
            note_item(access)
    elif "ConditionalCheckFailed" in error or "TransactionCanceled" in error:
        for access in accesses:
            note_refused(access)


def dispatch_noting_keys(app, environ, start_response, request_body: bytes) -> list[bytes]:
    """Serves a DynamoDB request (the caller holds DYNAMODB_LOCK, so the item images taken
    before and after are this request's own) and notes the partitions it touched."""
    operation = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
    try:
        request = json.loads(request_body or b"{}")
        backend = dynamodb_backend(environ)
        planned = (item_access(backend, *named) for named in item_requests(operation, request))
        accesses = [access for access in planned if access]
    except Exception:  # the record is a diagnostic: it never changes a response
        traceback.print_exc()
        return list(app(environ, start_response))
    reply: dict[str, str] = {"status": "", "error": ""}

    def capture(status: str, headers: list[tuple[str, str]], *exc_info):
        reply["status"] = status
        named = {name.lower(): value for name, value in headers}
        reply["error"] = named.get("x-amzn-errortype", "")
        return start_response(status, headers, *exc_info)

    body = b"".join(app(environ, capture))
    try:
        if not reply["error"] and not reply["status"].startswith("200"):
            reply["error"] = json.loads(body or b"{}").get("__type", "")
        note_response(operation, request, backend, accesses, reply["status"], reply["error"], body)
    except Exception:
        traceback.print_exc()
    return [body]
