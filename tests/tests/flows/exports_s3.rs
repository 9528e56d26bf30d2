//! Data exports kept in S3: stored by the worker's storage adapter and served through a
//! presigned URL, against the S3 API of the local AWS API server.

use shared::exports::{Download, ExportStorage};
use shared::id::ExportId;
use testkit::moto;

#[tokio::test]
async fn an_export_stored_in_s3_downloads_through_a_presigned_url() {
    let sdk = moto::sdk_config().await;
    let client = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let bucket = moto::unique_name("exports");
    client.create_bucket().bucket(&bucket).send().await.expect("bucket created");
    let storage = ExportStorage::S3 { client, bucket };
    let id = ExportId::new();
    storage.put(id, br#"{"kind":"user"}"#.to_vec()).await.unwrap();
    let Download::Redirect(url) = storage.download(id).await.unwrap() else { panic!("S3 downloads redirect") };
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), r#"{"kind":"user"}"#);
    // A missing export is not an error at presign time, but the URL leads nowhere (S3 says
    // 403 or 404 depending on list permissions).
    let Download::Redirect(url) = storage.download(ExportId::new()).await.unwrap() else { panic!() };
    let status = reqwest::get(&url).await.unwrap().status().as_u16();
    assert!(matches!(status, 403 | 404), "{status}");
}
