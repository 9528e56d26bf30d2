"""Deletes a preview stack (pr-<n>) and everything it holds, including what the template
keeps when a stack is deleted: the exports bucket is emptied first (CloudFormation cannot
delete a bucket with objects), then the stack goes, then what it retains (the table, under
deletion protection; the backup vault, with its recovery points) and the signing-key
secret `deploy.sh` created beside it. Refuses any stack that is not a preview.

Usage: python infra/teardown.py STACK_NAME
(`infra/teardown.sh pr-42` finds the stack name and the tools; the preview workflow runs it
when the pull request closes.)

AWS calls go to the default endpoint, or to AWS_ENDPOINT_URL.
"""

import re
import sys

import boto3
from botocore.exceptions import ClientError


def main():
    stack = sys.argv[1] if len(sys.argv) == 2 else sys.exit(__doc__)
    if not re.fullmatch(r"groundwork-pr-[0-9]+", stack):
        sys.exit(f"refusing to tear down {stack}: only preview stacks (groundwork-pr-<n>) are deleted this way")
    cfn, ddb, s3 = boto3.client("cloudformation"), boto3.client("dynamodb"), boto3.resource("s3")
    backup, secrets = boto3.client("backup"), boto3.client("secretsmanager")
    try:
        resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    except ClientError as e:
        if "does not exist" in str(e):
            print(f"{stack}: already gone")
            return 0
        raise
    kept = {r["ResourceType"]: r["PhysicalResourceId"] for r in resources
            if r["ResourceType"] in ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::Backup::BackupVault")}
    bucket = kept.get("AWS::S3::Bucket")
    if bucket and gone_or(lambda: s3.meta.client.head_bucket(Bucket=bucket)):
        print(f"emptying bucket {bucket}")
        s3.Bucket(bucket).object_versions.delete()
    print(f"deleting stack {stack}")
    cfn.delete_stack(StackName=stack)
    cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 15, "MaxAttempts": 120})
    table = kept.get("AWS::DynamoDB::Table")
    if table and gone_or(lambda: ddb.describe_table(TableName=table)):
        print(f"deleting table {table}")
        ddb.update_table(TableName=table, DeletionProtectionEnabled=False)
        ddb.delete_table(TableName=table)
    if bucket and gone_or(lambda: s3.meta.client.head_bucket(Bucket=bucket)):
        print(f"deleting bucket {bucket}")
        s3.Bucket(bucket).object_versions.delete()
        s3.Bucket(bucket).delete()
    vault = kept.get("AWS::Backup::BackupVault")
    if vault and gone_or(lambda: backup.describe_backup_vault(BackupVaultName=vault)):
        print(f"deleting backup vault {vault}")
        for page in backup.get_paginator("list_recovery_points_by_backup_vault").paginate(BackupVaultName=vault):
            for point in page["RecoveryPoints"]:
                backup.delete_recovery_point(BackupVaultName=vault, RecoveryPointArn=point["RecoveryPointArn"])
        backup.delete_backup_vault(BackupVaultName=vault)
    secret = "groundwork/" + stack.removeprefix("groundwork-") + "/jwt-keys"
    if gone_or(lambda: secrets.describe_secret(SecretId=secret)):
        print(f"deleting secret {secret}")
        secrets.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
    print(f"{stack}: deleted")
    return 0


def gone_or(check):
    """Whether the resource still exists (`check` raises not-found when it does not)."""
    try:
        check()
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] in ("ResourceNotFoundException", "404", "NoSuchBucket"):
            return False
        raise


if __name__ == "__main__":
    sys.exit(main())
