//! The storage contract: what every [`Store`] adapter must do, stated as tests. Each case is
//! an async function over a fresh store and its manual clock; [`store_contract_suite!`]
//! turns the whole list into `#[tokio::test]`s for one adapter.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use shared::clock::{Clock, ManualClock};
use shared::store::{
    Condition, Cursor, Delete, Index, Item, Key, Put, Query, Scan, SortKey, Store, StoreError, StoreExt, TxOp, Update,
};

/// A fresh, empty store for one test.
pub struct StoreFixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The clock it reads; tests move it to expire items.
    pub clock: ManualClock,
    /// Whatever must live as long as the store (a temporary directory...).
    pub guard: Box<dyn Any + Send>,
}

/// Instantiates every contract case for one adapter. `$make` is an async expression
/// producing a [`StoreFixture`].
#[macro_export]
macro_rules! store_contract_suite {
    ($make:expr) => {
        $crate::store_contract_suite!(@cases $make;
            get_of_a_missing_key_is_none,
            put_then_get_round_trips_every_json_type,
            put_if_not_exists_refuses_an_existing_item,
            versions_count_writes_and_lock_optimistically,
            concurrent_optimistic_writers_only_one_wins,
            update_sets_removes_and_adds,
            update_of_a_missing_item_fails,
            update_conditions_are_checked,
            update_moves_index_keys_and_expiry,
            concurrent_increments_lose_nothing,
            delete_returns_the_old_item_and_checks_conditions,
            query_selects_by_sort_key_in_both_directions,
            query_pages_cover_every_item_exactly_once,
            index_queries_select_and_paginate,
            scan_pages_cover_every_live_item_exactly_once,
            expired_items_do_not_exist,
            transactions_apply_everything,
            transactions_apply_nothing_when_a_condition_fails,
            invalid_requests_are_rejected,
            ping_answers,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fixture: $crate::store_contract::StoreFixture = $make.await;
                $crate::store_contract::$case(&fixture).await;
            }
        )*
    };
}

fn key(pk: &str, sk: &str) -> Key {
    Key::new(pk, sk)
}

async fn put(s: &dyn Store, item: Item) -> Item {
    s.put(Put::new(item)).await.expect("put")
}

/// A missing key reads as `None`.
pub async fn get_of_a_missing_key_is_none(f: &StoreFixture) {
    assert!(f.store.get(&key("nobody", "here")).await.unwrap().is_none());
}

/// Every JSON type survives a round trip, along with index keys and expiry.
pub async fn put_then_get_round_trips_every_json_type(f: &StoreFixture) {
    let data = json!({
        "s": "héllo ✓", "empty": "", "i": 42, "neg": -7, "big": 9_007_199_254_740_993_i64,
        "f": 1.5, "t": true, "n": null, "list": [1, "two", {"three": 3}],
        "obj": {"nested": {"deep": [true, false]}, "e": ""}
    });
    let mut item = Item::new(key("ACCOUNT#1", "PROFILE"))
        .with_gsi1(key("EMAIL#a@b.c", "USER#1"))
        .with_gsi2(key("G2", "x"))
        .expiring_at(f.clock.now_secs() + 3600);
    item.data = data.as_object().unwrap().clone();
    let stored = put(f.store.as_ref(), item.clone()).await;
    assert_eq!(stored.version, 1);
    let got = f.store.get(&item.key).await.unwrap().expect("item");
    assert_eq!(got.data, item.data);
    assert_eq!(got.gsi1, item.gsi1);
    assert_eq!(got.gsi2, item.gsi2);
    assert_eq!(got.expires_at, item.expires_at);
    assert_eq!(got, stored);

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Rec {
        name: String,
        n: u32,
    }
    let rec = Rec { name: "x".into(), n: 3 };
    put(f.store.as_ref(), Item::from_record(key("R", "1"), &rec).unwrap()).await;
    assert_eq!(f.store.get_record::<Rec>(&key("R", "1")).await.unwrap(), Some(rec));
}

/// `if_not_exists` refuses to overwrite, and writes nothing.
pub async fn put_if_not_exists_refuses_an_existing_item(f: &StoreFixture) {
    let s = f.store.as_ref();
    s.put(Put::new(Item::new(key("P", "1")).with("v", 1)).if_not_exists()).await.unwrap();
    let err = s.put(Put::new(Item::new(key("P", "1")).with("v", 2)).if_not_exists()).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
    assert_eq!(s.get(&key("P", "1")).await.unwrap().unwrap().data["v"], 1);
}

/// Each write adds one to the version; a write based on a stale version fails.
pub async fn versions_count_writes_and_lock_optimistically(f: &StoreFixture) {
    let s = f.store.as_ref();
    let v1 = put(s, Item::new(key("V", "1")).with("n", 0)).await;
    assert_eq!(v1.version, 1);
    let v2 = s.update(Update::new(key("V", "1")).set("n", 1)).await.unwrap();
    assert_eq!(v2.version, 2);
    let mut fresh = v2.clone();
    fresh.data.insert("n".into(), json!(2));
    let v3 = s.put(Put::new(fresh).if_unchanged()).await.unwrap();
    assert_eq!(v3.version, 3);
    let mut stale = v1.clone();
    stale.data.insert("n".into(), json!(99));
    assert!(matches!(s.put(Put::new(stale).if_unchanged()).await, Err(StoreError::ConditionFailed)));
    let err = s.update(Update::new(key("V", "1")).set("n", 5).when(Condition::VersionIs(2))).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed));
    assert_eq!(s.get(&key("V", "1")).await.unwrap().unwrap().data["n"], 2);
}

/// Of several writers that read the same version, exactly one wins.
pub async fn concurrent_optimistic_writers_only_one_wins(f: &StoreFixture) {
    let base = put(f.store.as_ref(), Item::new(key("RACE", "1")).with("owner", "none")).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&f.store);
        let mut mine = base.clone();
        mine.data.insert("owner".into(), json!(i));
        tasks.push(tokio::spawn(async move { store.put(Put::new(mine).if_unchanged()).await.is_ok() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(f.store.get(&key("RACE", "1")).await.unwrap().unwrap().version, 2);
}

/// `update` sets, removes and adds to attributes and returns the new item.
pub async fn update_sets_removes_and_adds(f: &StoreFixture) {
    let s = f.store.as_ref();
    put(s, Item::new(key("U", "1")).with("a", 1).with("b", "x").with("c", 10)).await;
    let u = s
        .update(Update::new(key("U", "1")).set("a", json!({"k": [1]})).remove("b").add("c", -3).add("d", 5))
        .await
        .unwrap();
    assert_eq!(u.data["a"], json!({"k": [1]}));
    assert!(!u.data.contains_key("b"));
    assert_eq!(u.data["c"], 7);
    assert_eq!(u.data["d"], 5);
    assert_eq!(s.get(&key("U", "1")).await.unwrap().unwrap(), u);
}

/// `update` never creates an item.
pub async fn update_of_a_missing_item_fails(f: &StoreFixture) {
    let err = f.store.update(Update::new(key("U", "missing")).set("a", 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
    assert!(f.store.get(&key("U", "missing")).await.unwrap().is_none());
}

/// `Equals` and `Missing` conditions are checked atomically with the update.
pub async fn update_conditions_are_checked(f: &StoreFixture) {
    let s = f.store.as_ref();
    put(s, Item::new(key("C", "1")).with("status", "active").with("n", 3)).await;
    let cond = Condition::Equals("status".into(), json!("suspended"));
    assert!(matches!(
        s.update(Update::new(key("C", "1")).set("x", 1).when(cond)).await,
        Err(StoreError::ConditionFailed)
    ));
    let cond = Condition::All(vec![
        Condition::Equals("status".into(), json!("active")),
        Condition::Equals("n".into(), json!(3)),
        Condition::Missing("deleted_at".into()),
    ]);
    let u = s.update(Update::new(key("C", "1")).set("status", "suspended").when(cond)).await.unwrap();
    assert_eq!(u.data["status"], "suspended");
    assert!(matches!(
        s.update(Update::new(key("C", "1")).set("x", 1).when(Condition::Missing("status".into()))).await,
        Err(StoreError::ConditionFailed)
    ));
}

/// `update` can move an item between index partitions and change its expiry.
pub async fn update_moves_index_keys_and_expiry(f: &StoreFixture) {
    let s = f.store.as_ref();
    put(s, Item::new(key("M", "1")).with_gsi1(key("STATUS#open", "M#1"))).await;
    s.update(Update::new(key("M", "1")).gsi1(Some(key("STATUS#closed", "M#1"))).gsi2(Some(key("G", "1"))))
        .await
        .unwrap();
    assert!(s.query(Query::index(Index::Gsi1, "STATUS#open")).await.unwrap().items.is_empty());
    assert_eq!(s.query(Query::index(Index::Gsi1, "STATUS#closed")).await.unwrap().items.len(), 1);
    assert_eq!(s.query(Query::index(Index::Gsi2, "G")).await.unwrap().items.len(), 1);
    let u = s.update(Update::new(key("M", "1")).gsi2(None).expires_at(Some(f.clock.now_secs() + 60))).await.unwrap();
    assert_eq!(u.gsi2, None);
    assert!(s.query(Query::index(Index::Gsi2, "G")).await.unwrap().items.is_empty());
    f.clock.advance_ms(61_000);
    assert!(s.get(&key("M", "1")).await.unwrap().is_none());
}

/// Atomic counters do not lose concurrent increments.
pub async fn concurrent_increments_lose_nothing(f: &StoreFixture) {
    put(f.store.as_ref(), Item::new(key("COUNTER", "1"))).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(&f.store);
        tasks.push(tokio::spawn(async move { store.update(Update::new(key("COUNTER", "1")).add("n", 1)).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(f.store.get(&key("COUNTER", "1")).await.unwrap().unwrap().data["n"], 20);
}

/// `delete` returns what it removed, and honours its condition.
pub async fn delete_returns_the_old_item_and_checks_conditions(f: &StoreFixture) {
    let s = f.store.as_ref();
    put(s, Item::new(key("D", "1")).with("a", 1)).await;
    let err = s.delete(Delete::new(key("D", "1")).when(Condition::Equals("a".into(), json!(2)))).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed));
    let old = s.delete(Delete::new(key("D", "1")).when(Condition::Exists)).await.unwrap().unwrap();
    assert_eq!(old.data["a"], 1);
    assert!(s.get(&key("D", "1")).await.unwrap().is_none());
    assert!(s.delete(Delete::new(key("D", "1"))).await.unwrap().is_none());
    assert!(matches!(
        s.delete(Delete::new(key("D", "1")).when(Condition::Exists)).await,
        Err(StoreError::ConditionFailed)
    ));
}

async fn seed_partition(s: &dyn Store) {
    for sk in ["A#1", "A#2", "A#3", "B#1", "B#2", "C", "a"] {
        put(s, Item::new(key("Q", sk)).with("sk", sk)).await;
    }
    put(s, Item::new(key("OTHER", "A#1"))).await;
}

fn sks(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.key.sk.as_str()).collect()
}

/// Sort-key conditions select the right items, in byte order, both ways.
pub async fn query_selects_by_sort_key_in_both_directions(f: &StoreFixture) {
    let s = f.store.as_ref();
    seed_partition(s).await;
    let q = |sort| Query::partition("Q").sort(sort);
    let run = |q: Query| async move { s.query(q).await.unwrap().items };
    assert_eq!(sks(&run(Query::partition("Q")).await), ["A#1", "A#2", "A#3", "B#1", "B#2", "C", "a"]);
    assert_eq!(sks(&run(Query::partition("Q").begins_with("A#")).await), ["A#1", "A#2", "A#3"]);
    assert_eq!(sks(&run(Query::partition("Q").begins_with("B#").descending()).await), ["B#2", "B#1"]);
    assert_eq!(sks(&run(q(SortKey::Between("A#2".into(), "B#1".into()))).await), ["A#2", "A#3", "B#1"]);
    assert_eq!(sks(&run(q(SortKey::Eq("C".into()))).await), ["C"]);
    assert_eq!(sks(&run(q(SortKey::Lt("A#3".into()))).await), ["A#1", "A#2"]);
    assert_eq!(sks(&run(q(SortKey::Le("A#3".into()))).await), ["A#1", "A#2", "A#3"]);
    assert_eq!(sks(&run(q(SortKey::Gt("B#2".into()))).await), ["C", "a"]);
    assert_eq!(sks(&run(q(SortKey::Ge("B#2".into())).descending()).await), ["a", "C", "B#2"]);
    assert!(run(Query::partition("Q").begins_with("Z")).await.is_empty());
    assert!(run(Query::partition("EMPTY")).await.is_empty());
}

/// Following cursors visits every item once, in order, in both directions.
pub async fn query_pages_cover_every_item_exactly_once(f: &StoreFixture) {
    let s = f.store.as_ref();
    let mut expected = Vec::new();
    for i in 0..23 {
        let sk = format!("ITEM#{i:03}");
        put(s, Item::new(key("PAGED", &sk))).await;
        expected.push(sk);
    }
    for descending in [false, true] {
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        let mut pages = 0;
        loop {
            let mut q = Query::partition("PAGED").begins_with("ITEM#").limit(5).after(cursor.take());
            q.descending = descending;
            let page = s.query(q).await.unwrap();
            assert!(page.items.len() <= 5);
            pages += 1;
            seen.extend(page.items.iter().map(|i| i.key.sk.clone()));
            // Cursors survive a trip through a client.
            match page.next {
                Some(c) => cursor = Some(Cursor::decode(&c.encode()).unwrap()),
                None => break,
            }
        }
        let mut want = expected.clone();
        if descending {
            want.reverse();
        }
        assert_eq!(seen, want);
        assert_eq!(pages, 5);
    }
    assert_eq!(s.query_all(Query::partition("PAGED").limit(7)).await.unwrap().len(), 23);
}

/// Following a scan's cursors visits every live item of the table once, whatever its
/// partition, and nothing expired; a query's index cursor is refused.
pub async fn scan_pages_cover_every_live_item_exactly_once(f: &StoreFixture) {
    let s = f.store.as_ref();
    let now = f.clock.now_secs();
    let mut expected = BTreeSet::new();
    for i in 0..23 {
        let (pk, sk) = (format!("SCAN#{}", i % 5), format!("ITEM#{i:03}"));
        put(s, Item::new(key(&pk, &sk)).with_gsi1(key("SCANNED", &sk))).await;
        expected.insert((pk, sk));
    }
    put(s, Item::new(key("SCAN#gone", "X")).expiring_at(now + 10)).await;
    f.clock.advance_ms(10_000);
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<Cursor>, 0);
    loop {
        let page = s.scan(Scan::new(4).after(cursor.take())).await.unwrap();
        assert!(page.items.len() <= 4);
        pages += 1;
        seen.extend(page.items.into_iter().map(|i| (i.key.pk, i.key.sk)));
        match page.next {
            Some(c) => cursor = Some(Cursor::decode(&c.encode()).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23, "no item twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(pages, 6, "pages of 4 for 23 items");
    let index_page = s.query(Query::index(Index::Gsi1, "SCANNED").limit(2)).await.unwrap();
    assert!(matches!(s.scan(Scan::new(2).after(index_page.next)).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.scan(Scan::new(0)).await, Err(StoreError::Invalid(_))));
}

/// Index queries select by index keys, order by index sort key, and paginate.
pub async fn index_queries_select_and_paginate(f: &StoreFixture) {
    let s = f.store.as_ref();
    for i in 0..12 {
        let tenant = if i % 2 == 0 { "T1" } else { "T2" };
        put(
            s,
            Item::new(key(&format!("USER#{i:02}"), "PROFILE"))
                .with_gsi1(key(&format!("TENANT#{tenant}"), &format!("JOINED#{:02}", 20 - i)))
                .with_gsi2(key("ALL", "same")),
        )
        .await;
    }
    put(s, Item::new(key("USER#99", "PROFILE"))).await; // not indexed
    let page = s.query(Query::index(Index::Gsi1, "TENANT#T1").limit(4)).await.unwrap();
    let firsts: Vec<_> = page.items.iter().map(|i| i.gsi1.as_ref().unwrap().sk.clone()).collect();
    assert_eq!(firsts, ["JOINED#10", "JOINED#12", "JOINED#14", "JOINED#16"]);
    let rest = s.query(Query::index(Index::Gsi1, "TENANT#T1").limit(4).after(page.next)).await.unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.next.is_none());
    let recent = s.query(Query::index(Index::Gsi1, "TENANT#T2").begins_with("JOINED#1").descending()).await.unwrap();
    assert_eq!(recent.items.len(), 5);
    assert_eq!(recent.items[0].gsi1.as_ref().unwrap().sk, "JOINED#19");
    // Equal index sort keys still paginate without loss or repetition.
    let mut all = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = s.query(Query::index(Index::Gsi2, "ALL").limit(5).after(cursor)).await.unwrap();
        for i in &page.items {
            assert!(all.insert(i.key.pk.clone()), "repeated {}", i.key.pk);
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(all.len(), 12);
}

/// An item past its expiry is gone for every operation, before any sweeper runs.
pub async fn expired_items_do_not_exist(f: &StoreFixture) {
    let s = f.store.as_ref();
    let now = f.clock.now_secs();
    put(s, Item::new(key("E", "1")).expiring_at(now + 10).with_gsi1(key("EI", "1"))).await;
    put(s, Item::new(key("E", "2")).expiring_at(now + 1000)).await;
    put(s, Item::new(key("E", "3"))).await;
    assert!(s.get(&key("E", "1")).await.unwrap().is_some());
    f.clock.advance_ms(10_000);
    assert!(s.get(&key("E", "1")).await.unwrap().is_none());
    assert_eq!(sks(&s.query(Query::partition("E")).await.unwrap().items), ["2", "3"]);
    assert!(s.query(Query::index(Index::Gsi1, "EI")).await.unwrap().items.is_empty());
    let page = s.query(Query::partition("E").limit(1)).await.unwrap();
    assert_eq!(sks(&page.items), ["2"]);
    assert!(matches!(s.update(Update::new(key("E", "1")).set("a", 1)).await, Err(StoreError::ConditionFailed)));
    assert!(matches!(
        s.transact(vec![TxOp::Check(key("E", "1"), Condition::Exists)]).await,
        Err(StoreError::TransactionCanceled { .. })
    ));
    // An expired item does not block a create.
    let fresh = s.put(Put::new(Item::new(key("E", "1")).with("new", true)).if_not_exists()).await.unwrap();
    assert_eq!(fresh.expires_at, None);
    assert_eq!(s.get(&key("E", "1")).await.unwrap().unwrap().data["new"], true);
}

/// A transaction applies each kind of operation.
pub async fn transactions_apply_everything(f: &StoreFixture) {
    let s = f.store.as_ref();
    put(s, Item::new(key("TX", "update")).with("n", 1)).await;
    put(s, Item::new(key("TX", "delete"))).await;
    put(s, Item::new(key("TX", "check")).with("ok", true)).await;
    s.transact(vec![
        TxOp::Put(Put::new(Item::new(key("TX", "new")).with("a", 1)).if_not_exists()),
        TxOp::Update(Update::new(key("TX", "update")).add("n", 1)),
        TxOp::Delete(Delete::new(key("TX", "delete")).when(Condition::Exists)),
        TxOp::Check(key("TX", "check"), Condition::Equals("ok".into(), json!(true))),
    ])
    .await
    .unwrap();
    assert_eq!(s.get(&key("TX", "new")).await.unwrap().unwrap().version, 1);
    let updated = s.get(&key("TX", "update")).await.unwrap().unwrap();
    assert_eq!((updated.data["n"].clone(), updated.version), (json!(2), 2));
    assert!(s.get(&key("TX", "delete")).await.unwrap().is_none());
}

/// A failed condition cancels the whole transaction and names the failing operations.
pub async fn transactions_apply_nothing_when_a_condition_fails(f: &StoreFixture) {
    let s = f.store.as_ref();
    put(s, Item::new(key("TX", "exists")).with("n", 1)).await;
    let err = s
        .transact(vec![
            TxOp::Put(Put::new(Item::new(key("TX", "a")).with("a", 1))),
            TxOp::Update(Update::new(key("TX", "exists")).add("n", 1)),
            TxOp::Put(Put::new(Item::new(key("TX", "exists2"))).if_not_exists()),
            TxOp::Check(key("TX", "missing"), Condition::Exists),
        ])
        .await
        .unwrap_err();
    match err {
        StoreError::TransactionCanceled { failed } => assert_eq!(failed, [3]),
        other => panic!("expected a cancelled transaction, got {other:?}"),
    }
    assert!(s.get(&key("TX", "a")).await.unwrap().is_none());
    assert!(s.get(&key("TX", "exists2")).await.unwrap().is_none());
    assert_eq!(s.get(&key("TX", "exists")).await.unwrap().unwrap().data["n"], 1);
}

/// Malformed requests are refused before anything is written.
pub async fn invalid_requests_are_rejected(f: &StoreFixture) {
    let s = f.store.as_ref();
    let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Invalid(_)));
    assert!(invalid(s.get(&key("", "x")).await.map(|_| ())));
    assert!(invalid(s.put(Put::new(Item::new(key("x", &"k".repeat(2000))))).await.map(|_| ())));
    assert!(invalid(s.query(Query::partition("Q").limit(0)).await.map(|_| ())));
    assert!(Cursor::decode("not a cursor").is_err());
    let dup = vec![TxOp::Put(Put::new(Item::new(key("DUP", "1")))), TxOp::Check(key("DUP", "1"), Condition::NotExists)];
    assert!(invalid(s.transact(dup).await));
    assert!(invalid(s.transact(Vec::new()).await));
    let nested = Condition::Equals("a".into(), json!({"no": "objects"}));
    assert!(invalid(s.update(Update::new(key("x", "y")).when(nested)).await.map(|_| ())));
    assert!(s.get(&key("DUP", "1")).await.unwrap().is_none());
}

/// `ping` answers on a working store.
pub async fn ping_answers(f: &StoreFixture) {
    f.store.ping().await.unwrap();
}
