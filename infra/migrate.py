"""Runs the table's data migrations on a deployed stack: invokes the scheduled function's
`live` alias with {"action": "migrate"} until it answers that every migration is done.

Usage: python infra/migrate.py (--stack STACK_NAME | --function FUNCTION_NAME)
(`infra/deploy.sh` runs it after every deploy; `infra/migrate.sh ENVIRONMENT` on its own.)

The function pauses before its own timeout with the work checkpointed and answers
"paused": it is invoked again. "busy" means another runner holds the migration lock (a
concurrent deploy, or a runner that crashed and whose lease has not ended yet): wait and try
again. A failing migration fails this command with the function's error; its record stays
at the last checkpoint and the next run resumes (see shared/src/migrations/mod.rs).

AWS calls go to the default endpoints, or to AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_LAMBDA.
"""

import argparse
import json
import sys
import time

import boto3
from botocore.config import Config

ALIAS = "live"
# The scheduled function's timeout is 300 s; a lock's lease is 60 s.
READ_TIMEOUT_S = 330
BUSY_WAIT_S = 10
BUSY_TRIES = 30


def scheduled_function(stack):
    cfn = boto3.client("cloudformation")
    res = cfn.describe_stack_resource(StackName=stack, LogicalResourceId="ScheduledFunction")
    return res["StackResourceDetail"]["PhysicalResourceId"]


def migrate(function, busy_wait_s=BUSY_WAIT_S):
    # One attempt per call: the SDK's own retry would hide a slow run behind a second one.
    lam = boto3.client("lambda", config=Config(read_timeout=READ_TIMEOUT_S, retries={"total_max_attempts": 1}))
    busy = 0
    while True:
        out = lam.invoke(FunctionName=function, Qualifier=ALIAS, Payload=json.dumps({"action": "migrate"}).encode())
        raw = out["Payload"].read()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode(errors="replace")
        if out.get("FunctionError"):
            detail = body.get("errorMessage", body) if isinstance(body, dict) else body
            print(f"data migrations failed: {detail}", file=sys.stderr)
            print("the migration resumes at its last checkpoint on the next run (infra/migrate.sh)", file=sys.stderr)
            return 1
        status = body.get("status") if isinstance(body, dict) else None
        if status == "complete":
            applied = body.get("applied") or []
            print("data migrations: " + (f"applied {', '.join(map(str, applied))}" if applied else "up to date"))
            return 0
        if status == "paused":
            print(f"data migrations: migration {body.get('number')} paused at a checkpoint; continuing")
            continue
        if status == "busy":
            busy += 1
            if busy > BUSY_TRIES:
                print(f"data migrations: the lock is still held by {body.get('holder')}; try again later", file=sys.stderr)
                return 1
            print(f"data migrations: another runner ({body.get('holder')}) holds the lock; waiting")
            time.sleep(busy_wait_s)
            continue
        print(f"data migrations: unexpected answer {body!r}", file=sys.stderr)
        return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", help="the stack whose ScheduledFunction runs them")
    which.add_argument("--function", help="the scheduled function's name")
    parser.add_argument("--busy-wait", type=float, default=BUSY_WAIT_S, help=argparse.SUPPRESS)
    args = parser.parse_args()
    function = args.function or scheduled_function(args.stack)
    return migrate(function, args.busy_wait)


if __name__ == "__main__":
    sys.exit(main())
