"""Undoes a stack's last deploy in one command: every function serving the stack's current
release gets its `live` alias (which the routes, queues and schedules invoke) pointed back,
at once, at the newest earlier version of another release that was not itself rolled back.

Usage: python infra/rollback.py STACK_NAME [--dry-run]
(`infra/rollback.sh ENVIRONMENT` finds the stack name and the tools.)

How it knows: each deploy passes the release it deploys as the stack's `Release` parameter
and publishes a version of each function described by that release (template.yaml; the
release is compiled into every binary, so every deploy publishes every function). A function
serves the release when its alias points at such a version, or sends it part of its traffic
(a canary in progress). The rolled-back release is recorded on each function (the tag
`groundwork:rolled-back`), so a later rollback never returns to it. A function with no
earlier release (new in this one) cannot go back: it is named and left as it is. The stack
itself still names the new release: fix forward, or deploy the previous commit.

AWS calls go to the default endpoint, or to AWS_ENDPOINT_URL (tests: the loopback AWS server).
"""

import argparse
import os
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ALIAS = "live"
ROLLED_BACK_TAG = "groundwork:rolled-back"
# Tag values hold at most 256 characters: the newest rolled-back releases are kept.
TAG_VALUE_MAX = 256


def _client(service):
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client(service, endpoint_url=endpoint)


def _code(e):
    return e.response.get("Error", {}).get("Code", "") if isinstance(e, ClientError) else ""


def stack_release(cfn, stack):
    try:
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as e:
        raise SystemExit(f"{stack}: no such stack ({e.response['Error'].get('Message', _code(e))})") from None
    parameters = stacks[0].get("Parameters", [])
    return next((p.get("ParameterValue") for p in parameters if p["ParameterKey"] == "Release"), None)


def stack_functions(cfn, stack):
    names = []
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] == "AWS::Lambda::Function":
                names.append(resource["PhysicalResourceId"])
    return sorted(names)


def published_versions(lam, function):
    versions = []
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function):
        versions.extend(v for v in page["Versions"] if v["Version"] != "$LATEST")
    return sorted(versions, key=lambda v: int(v["Version"]))


def rolled_back(lam, arn):
    """The releases rolled back from on this function, newest first."""
    tags = lam.list_tags(Resource=arn).get("Tags", {})
    return tags.get(ROLLED_BACK_TAG, "").split()


def plan(cfn, lam, stack):
    """The release, the moves [(function, arn, [(version, release) served now], (target
    version, its release))], and the functions that cannot move, with why."""
    release = stack_release(cfn, stack)
    if not release:
        raise SystemExit(f"{stack} has no Release parameter: it was not deployed by infra/deploy.sh")
    moves, stuck = [], []
    for function in stack_functions(cfn, stack):
        try:
            alias = lam.get_alias(FunctionName=function, Name=ALIAS)
        except ClientError as e:
            if _code(e) == "ResourceNotFoundException":
                stuck.append((function, f"no `{ALIAS}` alias"))
                continue
            raise
        versions = published_versions(lam, function)
        by_number = {v["Version"]: v for v in versions}
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        served = [alias["FunctionVersion"], *weights]
        serving = [(n, by_number.get(n, {}).get("Description", "")) for n in served]
        if not any(r == release for _, r in serving):
            continue
        # Back past every version of this release (a first deploy publishes twice) and of
        # releases rolled back before, to the newest version of another.
        skip = {release, *rolled_back(lam, alias["AliasArn"].rsplit(":", 1)[0])}
        newest_served = max(int(n) for n, r in serving if r == release)
        earlier = [v for v in versions if int(v["Version"]) < newest_served and v.get("Description", "") not in skip]
        if not earlier:
            stuck.append((function, f"nothing earlier than release {release} to go back to (new in it?)"))
            continue
        target = earlier[-1]
        arn = alias["AliasArn"].rsplit(":", 1)[0]
        moves.append((function, arn, serving, (target["Version"], target.get("Description", ""))))
    return release, moves, stuck


def record_rollback(lam, arn, release):
    releases = [release, *(r for r in rolled_back(lam, arn) if r != release)]
    # The oldest go first when the tag's value would be too long.
    while len(" ".join(releases)) > TAG_VALUE_MAX and len(releases) > 1:
        releases.pop()
    lam.tag_resource(Resource=arn, Tags={ROLLED_BACK_TAG: " ".join(releases)[:TAG_VALUE_MAX]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
    args = parser.parse_args()
    cfn, lam = _client("cloudformation"), _client("lambda")
    try:
        release, moves, stuck = plan(cfn, lam, args.stack)
        for function, why in stuck:
            print(f"{function}: left as it is: {why}")
        if not moves:
            print(f"{args.stack}: no function to move back from release {release}")
            return 1 if stuck else 0
        # Functions new in the release stay (named above); the others go back.
        for function, arn, serving, (target, target_release) in moves:
            now = ", ".join(f"{n} ({r or 'no release'})" for n, r in serving)
            print(f"{function}: {ALIAS} {now} -> {target} ({target_release or 'no release'})")
            if not args.dry_run:
                # No weights: every invocation goes to the target at once, even mid-canary.
                lam.update_alias(
                    FunctionName=function,
                    Name=ALIAS,
                    FunctionVersion=target,
                    RoutingConfig={"AdditionalVersionWeights": {}},
                )
                record_rollback(lam, arn, release)
    except (ClientError, BotoCoreError) as e:
        raise SystemExit(f"AWS refused a call: {e}") from None
    if args.dry_run:
        print("dry run: nothing moved")
    else:
        print(f"rolled back {len(moves)} function(s) from {release}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
