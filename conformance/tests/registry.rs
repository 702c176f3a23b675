//! The broker registry and the cluster notifications on a real redis-server: registration,
//! expiry, refusing a duplicate id held by a live broker, taking over a dead one's id, clean
//! removal, keyspace isolation, and append notifications reaching other brokers.

use korvet_conformance::redis_server::RedisServer;
use korvet_core::cluster::{BrokerInfo, ClusterEvent};
use korvet_core::records::Record;
use korvet_core::storage::{StorageCommand, StorageDriver};
use korvet_storage_redis::membership::Membership;
use korvet_storage_redis::registry::{ClaimError, Registry};
use korvet_storage_redis::{RedisOptions, RedisStorage};
use std::time::{Duration, Instant};

fn info(id: i32) -> BrokerInfo {
    BrokerInfo::new(id, "127.0.0.1", 9000 + id, (id == 1).then(|| "rack-b".to_string()))
}

async fn storage(redis: &RedisServer, keyspace: &str, broker_id: i32) -> RedisStorage {
    let mut options = RedisOptions::new(redis.uri(), keyspace);
    options.broker_id = broker_id;
    RedisStorage::connect(&options).await.expect("connect")
}

fn registry(storage: &RedisStorage, id: i32, instance: &str, ttl: Duration) -> Registry {
    Registry::new(storage.connection(), storage.keys().clone(), info(id), instance.into(), ttl)
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, limit: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn brokers_register_expire_and_leave() {
    let redis = RedisServer::start();
    let store = storage(&redis, "reg", 0).await;
    let ttl = Duration::from_millis(800);
    let zero = registry(&store, 0, "a", ttl);
    let one = registry(&store, 1, "b", ttl);
    zero.register(Duration::from_millis(300), tokio::time::sleep).await.expect("register 0");
    one.register(Duration::from_millis(300), tokio::time::sleep).await.expect("register 1");
    assert_eq!(zero.live_brokers().await.unwrap(), vec![info(0), info(1)], "host, port and rack are stored");

    // The guide's key names, readable by any Redis client.
    let mut conn = store.connection();
    let ids: Vec<i32> = redis::cmd("SMEMBERS").arg("reg:brokers").query_async(&mut conn).await.unwrap();
    assert_eq!(ids.len(), 2);
    let ttl_ms: i64 = redis::cmd("PTTL").arg("reg:broker:1").query_async(&mut conn).await.unwrap();
    assert!(ttl_ms > 0 && ttl_ms <= 800, "entries expire ({ttl_ms} ms left)");

    // Broker 1 stops heartbeating: its entry expires and it is dropped from the set.
    wait_until("broker 1 to expire", Duration::from_secs(10), || async {
        zero.claim().await.unwrap();
        zero.live_brokers().await.unwrap() == vec![info(0)]
    })
    .await;
    let ids: Vec<i32> = redis::cmd("SMEMBERS").arg("reg:brokers").query_async(&mut conn).await.unwrap();
    assert_eq!(ids, vec![0], "stale ids are removed from the set");

    zero.deregister().await.unwrap();
    assert!(zero.live_brokers().await.unwrap().is_empty(), "a clean shutdown leaves the registry at once");
}

#[tokio::test]
async fn a_live_brokers_id_is_refused_and_a_dead_ones_taken_over() {
    let redis = RedisServer::start();
    let store = storage(&redis, "dup", 0).await;
    let ttl = Duration::from_secs(3);
    let live = registry(&store, 0, "first", ttl);
    live.register(Duration::from_millis(500), tokio::time::sleep).await.expect("first registration");
    let heartbeats = {
        let live = live.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                live.claim().await.expect("heartbeat");
            }
        })
    };
    let second = registry(&store, 0, "second", ttl);
    match second.register(Duration::from_millis(600), tokio::time::sleep).await {
        Err(ClaimError::Taken(holder)) => assert_eq!(holder.address, "127.0.0.1:9000"),
        other => panic!("a second broker with a live broker's id must be refused, got {other:?}"),
    }
    // The first broker dies without leaving (kill -9): after watching its entry go unrefreshed,
    // a restarted broker takes the id over long before the TTL runs out.
    heartbeats.abort();
    let started = Instant::now();
    second.register(Duration::from_millis(600), tokio::time::sleep).await.expect("take over a dead broker's id");
    assert!(started.elapsed() < ttl, "took {:?}", started.elapsed());
    // The old instance, were it to come back, no longer owns the entry.
    assert!(matches!(live.claim().await, Err(ClaimError::Taken(_))));
}

#[tokio::test]
async fn keyspaces_are_separate_clusters() {
    let redis = RedisServer::start();
    let blue = storage(&redis, "blue", 0).await;
    let green = storage(&redis, "green", 0).await;
    let ttl = Duration::from_secs(5);
    registry(&blue, 0, "b0", ttl).claim().await.unwrap();
    registry(&green, 0, "g0", ttl).claim().await.expect("the same id in another keyspace is another cluster");
    registry(&green, 1, "g1", ttl).claim().await.unwrap();
    assert_eq!(registry(&blue, 0, "b0", ttl).live_brokers().await.unwrap().len(), 1);
    assert_eq!(registry(&green, 0, "g0", ttl).live_brokers().await.unwrap().len(), 2);
}

/// Broker 1 runs the membership loop; broker 0 registers and appends. Broker 1 hears of the
/// join at once (not at its next heartbeat) and of broker 0's appends, but not of its own.
#[tokio::test]
async fn membership_reports_live_brokers_and_remote_appends() {
    let redis = RedisServer::start();
    let zero = storage(&redis, "notify", 0).await;
    let one = storage(&redis, "notify", 1).await;
    let ttl = Duration::from_secs(30);
    let one_registry = registry(&one, 1, "one", ttl);
    one_registry.claim().await.unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let membership = Membership { registry: one_registry, pubsub: one.pubsub(), heartbeat: Duration::from_secs(10), probe_interval: None };
    let runner = tokio::spawn(membership.run(tokio::time::sleep, move |event| events_tx.send(event).is_ok()));
    assert_eq!(next(&mut events).await, ClusterEvent::LiveBrokers(vec![info(1)]));

    registry(&zero, 0, "zero", ttl).register(Duration::from_millis(100), tokio::time::sleep).await.unwrap();
    assert_eq!(next(&mut events).await, ClusterEvent::LiveBrokers(vec![info(0), info(1)]), "joins are announced");

    let record = Record { timestamp: 1, key: None, value: Some(bytes::Bytes::from_static(b"v")), headers: vec![] };
    let append = |topic: &str| StorageCommand::Append { topic: topic.into(), partition: 2, producer: None, records: vec![record.clone()], replicated: false, transactional: false, batch: None };
    for name in ["own", "remote"] {
        let topic = korvet_core::storage::TopicMeta { name: name.into(), id: [3; 16], partitions: 3, configs: Default::default() };
        let _ = zero.execute(StorageCommand::CreateTopic { topic }).await;
    }
    // Broker 1's own append is not reported back to it; broker 0's is.
    let _ = one.execute(append("own")).await;
    let _ = zero.execute(append("remote")).await;
    assert_eq!(next(&mut events).await, ClusterEvent::RemoteAppend { topic: "remote".into(), partition: 2 });
    runner.abort();
}

async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<ClusterEvent>) -> ClusterEvent {
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    event.expect("an event within 5 s").expect("membership running")
}
