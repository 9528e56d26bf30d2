"""Undoes a stack's last deploy in one command: every function the last deploy changed gets
its `live` alias (which the routes, queues and schedules invoke) pointed back at the version
it served before. Functions the last deploy left alone are left alone.

Usage: python infra/rollback.py STACK_NAME [--dry-run]
(`infra/rollback.sh ENVIRONMENT` finds the stack name and the tools.)

How it knows: each deploy passes the release it deploys as the stack's `Release` parameter
and publishes a version of each changed function described by that release (template.yaml).
A function whose live version is described by the stack's release changed in the last
deploy; it goes back to its newest older version. The stack itself still names the new
release: fix forward, or deploy the previous commit, to bring the two back in line.

AWS calls go to the default endpoint, or to AWS_ENDPOINT_URL (tests: the loopback AWS server).
"""

import argparse
import os
import sys

import boto3

ALIAS = "live"


def _client(service):
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client(service, endpoint_url=endpoint)


def stack_release(cfn, stack):
    parameters = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Parameters", [])
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


def plan(cfn, lam, stack):
    """[(function, (live version, its release), (target version, its release))] for every
    function the last deploy changed; raises SystemExit when one has nothing to go back to."""
    release = stack_release(cfn, stack)
    if not release:
        raise SystemExit(f"{stack} has no Release parameter: it was not deployed by infra/deploy.sh")
    moves = []
    for function in stack_functions(cfn, stack):
        live = lam.get_alias(FunctionName=function, Name=ALIAS)["FunctionVersion"]
        versions = published_versions(lam, function)
        current = next((v for v in versions if v["Version"] == live), None)
        if current is None or current.get("Description") != release:
            continue
        older = [v for v in versions if int(v["Version"]) < int(live)]
        if not older:
            raise SystemExit(f"{function}: version {live} is its first; there is nothing to roll back to")
        target = older[-1]
        moves.append((function, (live, release), (target["Version"], target.get("Description", ""))))
    return release, moves


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
    args = parser.parse_args()
    cfn, lam = _client("cloudformation"), _client("lambda")
    release, moves = plan(cfn, lam, args.stack)
    if not moves:
        print(f"{args.stack}: no function serves release {release}: nothing to roll back")
        return 0
    for function, (live, _), (target, target_release) in moves:
        print(f"{function}: {ALIAS} {live} ({release}) -> {target} ({target_release or 'no release'})")
        if not args.dry_run:
            # No weights: every invocation goes to the target at once, even mid-canary.
            lam.update_alias(
                FunctionName=function,
                Name=ALIAS,
                FunctionVersion=target,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )
    print("dry run: nothing moved" if args.dry_run else f"rolled back {len(moves)} function(s) from {release}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
