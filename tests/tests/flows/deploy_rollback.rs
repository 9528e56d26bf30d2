//! The operator scripts against a loopback AWS server of their own (the shared one's state
//! dump, which other tests read, cannot serialize Lambda functions):
//! - `infra/rollback.py`, the one-command rollback: a stack whose last deploy changed one
//!   function of two; the rollback moves that one's `live` alias back and leaves the other,
//!   says what it would do in a dry run, and finds nothing to do the second time;
//! - `infra/teardown.py`, the preview teardown: the stack and what it keeps (the table, the
//!   bucket) are gone, a second run finds nothing, and a non-preview stack is refused.

use std::process::Command;

const SETUP: &str = r#"
import io, json, sys, zipfile
import boto3
stack, prefix = sys.argv[1:3]
iam, cfn, lam = boto3.client("iam"), boto3.client("cloudformation"), boto3.client("lambda")
role = iam.create_role(RoleName=stack, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
names = {k: f"{prefix}-{k}" for k in "abcde"}
def function(name):
    return {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": name, "Runtime": "provided.al2023",
            "Handler": "bootstrap", "Role": role, "Code": {"ZipFile": "v0"}}}
template = {"Parameters": {"Release": {"Type": "String"}},
            "Resources": {k.upper(): function(n) for k, n in names.items()}}
cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template),
                 Parameters=[{"ParameterKey": "Release", "ParameterValue": "0.1.0+second"}])
n = 0
def publish(function, release):
    global n
    n += 1
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", f"build {n}")
    lam.update_function_code(FunctionName=function, ZipFile=buf.getvalue())
    return lam.publish_version(FunctionName=function, Description=release)["Version"]
# a: an ordinary deploy of the second release over the first.
publish(names["a"], "0.1.0+first"); v = publish(names["a"], "0.1.0+second")
lam.create_alias(FunctionName=names["a"], Name="live", FunctionVersion=v)
# b: the second release published twice (a first deploy's second pass).
publish(names["b"], "0.1.0+first"); publish(names["b"], "0.1.0+second"); v = publish(names["b"], "0.1.0+second")
lam.create_alias(FunctionName=names["b"], Name="live", FunctionVersion=v)
# c: a canary in progress, 10% on the second release.
old = publish(names["c"], "0.1.0+first"); new = publish(names["c"], "0.1.0+second")
lam.create_alias(FunctionName=names["c"], Name="live", FunctionVersion=old,
                 RoutingConfig={"AdditionalVersionWeights": {new: 0.1}})
# d: new in the second release; e: no alias.
v = publish(names["d"], "0.1.0+second")
lam.create_alias(FunctionName=names["d"], Name="live", FunctionVersion=v)
publish(names["e"], "0.1.0+first")
"#;

/// A third release of function a after the rollback, and the stack naming it.
const THIRD: &str = r#"
import io, json, sys, zipfile
import boto3
stack, prefix = sys.argv[1:3]
cfn, lam = boto3.client("cloudformation"), boto3.client("lambda")
a = f"{prefix}-a"
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("bootstrap", "third")
lam.update_function_code(FunctionName=a, ZipFile=buf.getvalue())
v = lam.publish_version(FunctionName=a, Description="0.1.0+third")["Version"]
lam.update_alias(FunctionName=a, Name="live", FunctionVersion=v)
cfn.update_stack(StackName=stack, UsePreviousTemplate=True,
                 Parameters=[{"ParameterKey": "Release", "ParameterValue": "0.1.0+third"}])
"#;

const LIVE: &str = r#"
import sys
import boto3
lam = boto3.client("lambda")
out = []
for f in sys.argv[1:]:
    alias = lam.get_alias(FunctionName=f, Name="live")
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    out.append(alias["FunctionVersion"] + ("+" + ",".join(weights) if weights else ""))
print(" ".join(out))
"#;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn interpreter() -> String {
    format!("{ROOT}/.tools/venv/bin/python")
}

/// A loopback AWS server for this test alone, stopped when dropped.
struct Moto(std::process::Child, String);

impl Moto {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(interpreter())
            .args(["infra/moto_server.py", &port.to_string()])
            .current_dir(ROOT)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the AWS server starts (run the tests with ./infra/test.sh, which installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self(child, format!("http://127.0.0.1:{port}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the AWS server did not start");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python(moto: &Moto, args: &[&str]) -> String {
    let (ok, text) = python_status(moto, args);
    assert!(ok, "{args:?}: {text}");
    text
}

/// Whether it succeeded, and what it printed (both streams).
fn python_status(moto: &Moto, args: &[&str]) -> (bool, String) {
    let out = Command::new(interpreter())
        .args(args)
        .current_dir(ROOT)
        .env("AWS_ENDPOINT_URL", &moto.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("python runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_rollback_moves_every_function_of_the_release_back_and_never_to_a_release_rolled_back() {
    let moto = Moto::start();
    let id = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let (stack, prefix) = (format!("gw-rollback-{id}"), format!("gw-{id}"));
    python(&moto, &["-c", SETUP, &stack, &prefix]);
    let names: Vec<String> = "abcd".chars().map(|c| format!("{prefix}-{c}")).collect();
    let live = |moto: &Moto| {
        let mut args = vec!["-c", LIVE];
        args.extend(names.iter().map(String::as_str));
        python(moto, &args).trim().to_owned()
    };

    let dry = python(&moto, &["infra/rollback.py", &stack, "--dry-run"]);
    for line in [
        format!("{prefix}-a: live 2 (0.1.0+second) -> 1 (0.1.0+first)"),
        format!("{prefix}-b: live 3 (0.1.0+second) -> 1 (0.1.0+first)"),
        format!("{prefix}-c: live 1 (0.1.0+first), 2 (0.1.0+second) -> 1 (0.1.0+first)"),
        format!("{prefix}-d: left as it is: nothing earlier than release 0.1.0+second"),
        format!("{prefix}-e: left as it is: no `live` alias"),
    ] {
        assert!(dry.contains(&line), "{line} in {dry}");
    }
    assert_eq!(live(&moto), "2 3 1+2 1", "a dry run moves nothing");

    let done = python(&moto, &["infra/rollback.py", &stack]);
    assert!(done.contains("rolled back 3 function(s) from 0.1.0+second"), "{done}");
    assert_eq!(live(&moto), "1 1 1 1", "the canary's weight is gone too");
    let again = python_status(&moto, &["infra/rollback.py", &stack]).1;
    assert!(again.contains("no function to move back"), "{again}");

    // A third release, then its rollback: back to the first, never to the second, which
    // was rolled back already.
    python(&moto, &["-c", THIRD, &stack, &prefix]);
    let third = python(&moto, &["infra/rollback.py", &stack]);
    assert!(third.contains(&format!("{prefix}-a: live 3 (0.1.0+third) -> 1 (0.1.0+first)")), "{third}");

    // A stack that does not exist is a message, not a traceback.
    let (ok, missing) = python_status(&moto, &["infra/rollback.py", "gw-no-such-stack"]);
    assert!(!ok && missing.contains("no such stack") && !missing.contains("Traceback"), "{missing}");
}

/// A preview stack holding a table (deletion protection on, kept when the stack goes) and
/// a bucket with an object.
const PREVIEW: &str = r#"
import json, sys
import boto3
stack = sys.argv[1]
template = {"Resources": {
    "Table": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "Properties": {
        "TableName": stack + "-table", "BillingMode": "PAY_PER_REQUEST", "DeletionProtectionEnabled": True,
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}},
    "Exports": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "Properties": {"BucketName": stack + "-exports"}}}}
boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps(template))
boto3.client("s3").put_object(Bucket=stack + "-exports", Key="exports/a.zip", Body=b"zip")
boto3.client("secretsmanager").create_secret(Name="groundwork/" + stack.removeprefix("groundwork-") + "/jwt-keys", SecretString="k")
"#;

const LEFT: &str = r#"
import sys
import boto3
stack = sys.argv[1]
tables = [t for t in boto3.client("dynamodb").list_tables()["TableNames"] if t.startswith(stack)]
buckets = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"] if b["Name"].startswith(stack)]
stacks = [s["StackName"] for s in boto3.client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"] if s["StackName"] == stack]
secrets = [s["Name"] for s in boto3.client("secretsmanager").list_secrets()["SecretList"] if stack.removeprefix("groundwork-") in s["Name"]]
print(len(tables), len(buckets), len(stacks), len(secrets))
"#;

#[test]
fn a_preview_teardown_leaves_nothing_and_touches_only_previews() {
    let moto = Moto::start();
    let stack = format!("groundwork-pr-{}", std::process::id());
    python(&moto, &["-c", PREVIEW, &stack]);
    assert_eq!(python(&moto, &["-c", LEFT, &stack]).trim(), "1 1 1 1");
    let done = python(&moto, &["infra/teardown.py", &stack]);
    assert!(done.contains(&format!("{stack}: deleted")), "{done}");
    assert_eq!(python(&moto, &["-c", LEFT, &stack]).trim(), "0 0 0 0", "{done}");
    let again = python(&moto, &["infra/teardown.py", &stack]);
    assert!(again.contains("already gone"), "{again}");
    let (ok, refused) = python_status(&moto, &["infra/teardown.py", "groundwork-production"]);
    assert!(!ok && refused.contains("only preview stacks"), "{refused}");
}
