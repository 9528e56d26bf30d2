//! The embedded store's get, put, query and transaction, on a file-backed database as the
//! local stack uses it. Run: `cargo bench -p shared --bench embedded_store`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use shared::clock::SystemClock;
use shared::store::sqlite::SqliteStore;
use shared::store::{Condition, Item, Key, Put, Query, Store, TxOp, Update};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.sqlite3"), Arc::new(SystemClock)).unwrap();
    let record = |i: u64| {
        Item::new(Key::new("ACCOUNT#01J0000000000000000000000", format!("MEMBER#{i:08}")))
            .with_gsi1(Key::new(format!("USER#{i:08}"), "ACCOUNT#01J0000000000000000000000"))
            .with("email", format!("user{i}@example.com"))
            .with("role", "member")
            .with("joined_at", 1_800_000_000_i64)
    };
    rt.block_on(async {
        for i in 0..1_000 {
            store.put(Put::new(record(i))).await.unwrap();
        }
    });

    let mut g = c.benchmark_group("embedded_store");
    let key = Key::new("ACCOUNT#01J0000000000000000000000", "MEMBER#00000500");
    g.bench_function("get", |b| b.to_async(&rt).iter(|| async { store.get(&key).await.unwrap().unwrap() }));
    let mut n = 10_000;
    g.bench_function("put", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let item = record(n);
            let store = &store;
            async move { store.put(Put::new(item)).await.unwrap() }
        });
    });
    g.bench_function("query_page_of_20", |b| {
        b.to_async(&rt).iter(|| async {
            let q = Query::partition("ACCOUNT#01J0000000000000000000000").begins_with("MEMBER#").limit(20);
            store.query(q).await.unwrap()
        });
    });
    g.bench_function("transaction_of_3", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .transact(vec![
                    TxOp::Check(key.clone(), Condition::Exists),
                    TxOp::Update(
                        Update::new(Key::new("ACCOUNT#01J0000000000000000000000", "MEMBER#00000001")).add("n", 1),
                    ),
                    TxOp::Put(Put::new(Item::new(Key::new("AUDIT#bench", format!("{}", ulid::Ulid::new()))))),
                ])
                .await
                .unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
