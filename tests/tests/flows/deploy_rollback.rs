//! `infra/rollback.py`, the one-command rollback, against a loopback AWS server of its own
//! (the shared one's state dump, which other tests read, cannot serialize Lambda functions):
//! a stack whose last deploy changed one function of two; the rollback moves that one's
//! `live` alias back and leaves the other, says what it would do in a dry run, and finds
//! nothing to do the second time.

use std::process::Command;

const SETUP: &str = r#"
import io, json, sys, zipfile
import boto3
stack, a, b = sys.argv[1:4]
iam, cfn, lam = boto3.client("iam"), boto3.client("cloudformation"), boto3.client("lambda")
role = iam.create_role(RoleName=stack, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
def function(name):
    return {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": name, "Runtime": "provided.al2023",
            "Handler": "bootstrap", "Role": role, "Code": {"ZipFile": "v1"}}}
template = {"Parameters": {"Release": {"Type": "String"}}, "Resources": {"A": function(a), "B": function(b)}}
cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template),
                 Parameters=[{"ParameterKey": "Release", "ParameterValue": "0.1.0+second"}])
def code(text):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", text)
    return buf.getvalue()
# A was deployed in both releases; B only in the first.
lam.publish_version(FunctionName=a, Description="0.1.0+first")
lam.update_function_code(FunctionName=a, ZipFile=code("v2"))
lam.publish_version(FunctionName=a, Description="0.1.0+second")
lam.create_alias(FunctionName=a, Name="live", FunctionVersion="2")
lam.publish_version(FunctionName=b, Description="0.1.0+first")
lam.create_alias(FunctionName=b, Name="live", FunctionVersion="1")
"#;

const LIVE: &str = r#"
import sys
import boto3
lam = boto3.client("lambda")
print(" ".join(lam.get_alias(FunctionName=f, Name="live")["FunctionVersion"] for f in sys.argv[1:]))
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
    let out = Command::new(interpreter())
        .args(args)
        .current_dir(ROOT)
        .env("AWS_ENDPOINT_URL", &moto.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_rollback_moves_back_only_what_the_last_deploy_changed() {
    let moto = Moto::start();
    let id = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let (stack, a, b) = (format!("gw-rollback-{id}"), format!("gw-{id}-a"), format!("gw-{id}-b"));
    python(&moto, &["-c", SETUP, &stack, &a, &b]);

    let dry = python(&moto, &["infra/rollback.py", &stack, "--dry-run"]);
    assert!(dry.contains(&format!("{a}: live 2 (0.1.0+second) -> 1 (0.1.0+first)")), "{dry}");
    assert!(!dry.contains(&b), "{dry}");
    assert_eq!(python(&moto, &["-c", LIVE, &a, &b]).trim(), "2 1", "a dry run moves nothing");

    let done = python(&moto, &["infra/rollback.py", &stack]);
    assert!(done.contains("rolled back 1 function(s) from 0.1.0+second"), "{done}");
    assert_eq!(python(&moto, &["-c", LIVE, &a, &b]).trim(), "1 1");

    let again = python(&moto, &["infra/rollback.py", &stack]);
    assert!(again.contains("nothing to roll back"), "{again}");
}
