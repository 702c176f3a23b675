//! What `KORVET_REDIS_URI` names: one Redis server, a Redis Cluster (any of its nodes, or a
//! comma-separated list of seed nodes), or a master watched by Redis Sentinel
//! (`redis+sentinel://host:26379[,host2:26379]/mastername[/db]`, or `rediss+sentinel://` to
//! reach the Sentinels and the master over TLS).
//!
//! Whether a server is a cluster node is asked of the server itself (`INFO cluster`), so the
//! same URI works whichever way Redis is deployed.

use redis::{ConnectionAddr, ConnectionInfo, RedisError};
use std::time::Duration;

/// `info` with its address moved to `host:port`: another cluster node, or the master Sentinel
/// names. TLS, with its certificates, stays as `info` had it, since every node of a deployment
/// speaks the same protocol (a node listening only for TLS resets a plaintext connection).
pub fn at_address(info: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let addr = match info.addr() {
        ConnectionAddr::TcpTls { insecure, tls_params, .. } => ConnectionAddr::TcpTls { host, port, insecure: *insecure, tls_params: tls_params.clone() },
        _ => ConnectionAddr::Tcp(host, port),
    };
    info.clone().set_addr(addr)
}

/// The host of a TCP address, with or without TLS.
pub fn host_of(info: &ConnectionInfo) -> Option<&str> {
    match info.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => Some(host),
        _ => None,
    }
}

/// The Redis deployment behind the URI.
#[derive(Clone, Debug)]
pub enum Deployment {
    /// One server.
    Single(ConnectionInfo),
    /// A Redis Cluster, reached through these seed nodes.
    Cluster(Vec<ConnectionInfo>),
    /// The master Sentinel names `master`; `template` carries the credentials and database
    /// for the master itself.
    Sentinel { sentinels: Vec<(String, u16)>, master: String, template: ConnectionInfo },
}

/// Splits the URI into the addresses it names. Nodes after the first may leave out the scheme
/// and credentials (`redis://:secret@a:7000,b:7001`), which they then share with the first.
pub fn parse(uri: &str, password: Option<&str>) -> Result<Deployment, RedisError> {
    let invalid = |why: String| RedisError::from((redis::ErrorKind::InvalidClientConfig, "invalid Redis URI", why));
    let sentinel = uri.strip_prefix("redis+sentinel://").map(|rest| ("redis", rest)).or_else(|| uri.strip_prefix("rediss+sentinel://").map(|rest| ("rediss", rest)));
    if let Some((scheme, rest)) = sentinel {
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or_else(|| invalid("a Sentinel URI names its master: redis+sentinel://host:26379/mastername".into()))?;
        let mut parts = path.split('/');
        let master = parts.next().filter(|m| !m.is_empty()).ok_or_else(|| invalid("the Sentinel URI names no master".into()))?.to_string();
        let db = parts.next().filter(|d| !d.is_empty()).unwrap_or("0");
        let mut sentinels = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            let (name, port) = match host.rsplit_once(':') {
                Some((name, port)) => (name, port.parse::<u16>().map_err(|_| invalid(format!("bad Sentinel port in {host}")))?),
                None => (host, 26379),
            };
            sentinels.push((name.to_string(), port));
        }
        if sentinels.is_empty() {
            return Err(invalid("the Sentinel URI names no Sentinel".into()));
        }
        let credentials = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        // With rediss+sentinel:// the Sentinels and the master are both reached over TLS.
        let template = with_password(format!("{scheme}://{credentials}{}:{}/{db}", sentinels[0].0, sentinels[0].1).as_str().parse()?, password);
        return Ok(Deployment::Sentinel { sentinels, master, template });
    }
    let mut pieces = uri.split(',').map(str::trim).filter(|p| !p.is_empty());
    let first = pieces.next().ok_or_else(|| invalid("the Redis URI is empty".into()))?;
    let (scheme, after) = first.split_once("://").unwrap_or(("redis", first));
    let credentials = after.split_once('@').map(|(userinfo, _)| format!("{userinfo}@")).unwrap_or_default();
    let mut nodes = vec![with_password(first.parse()?, password)];
    for piece in pieces {
        let full = if piece.contains("://") { piece.to_string() } else { format!("{scheme}://{credentials}{piece}") };
        nodes.push(with_password(full.as_str().parse()?, password));
    }
    Ok(if nodes.len() == 1 { Deployment::Single(nodes.remove(0)) } else { Deployment::Cluster(nodes) })
}

fn with_password(info: ConnectionInfo, password: Option<&str>) -> ConnectionInfo {
    let info = info.set_tcp_settings(crate::connection::tcp_settings());
    match password {
        Some(password) => {
            let settings = info.redis_settings().clone().set_password(password.to_string());
            info.set_redis_settings(settings)
        }
        None => info,
    }
}

/// Asks the first seed that answers whether it is a cluster node, and so what the deployment
/// is; a single server that turns out to be a cluster node becomes that cluster's seed.
pub async fn detect(deployment: Deployment, connect_timeout: Duration, response_timeout: Duration) -> Result<Deployment, RedisError> {
    let seeds = match &deployment {
        Deployment::Sentinel { .. } => return Ok(deployment),
        Deployment::Single(info) => vec![info.clone()],
        Deployment::Cluster(seeds) => seeds.clone(),
    };
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(connect_timeout)).set_response_timeout(Some(response_timeout));
    let mut last = None;
    for seed in &seeds {
        let asked = async {
            let mut conn = redis::Client::open(seed.clone())?.get_multiplexed_async_connection_with_config(&config).await?;
            redis::cmd("INFO").arg("cluster").query_async::<String>(&mut conn).await
        };
        match asked.await {
            Ok(info) => {
                let cluster = info.lines().any(|line| line.trim() == "cluster_enabled:1");
                return Ok(if cluster { Deployment::Cluster(seeds) } else { Deployment::Single(seeds[0].clone()) });
            }
            // The server answered, but not INFO (a managed Redis may refuse it): it is taken for
            // a single server, whose connection then says what is wrong, if anything.
            Err(err) if err.kind() != redis::ErrorKind::Io && !err.is_timeout() && !err.is_connection_refusal() => {
                log::debug!("{} did not answer INFO cluster ({err}); taking it for a single server", seed.addr());
                return Ok(Deployment::Single(seed.clone()));
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis node to connect to"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(info: &ConnectionInfo) -> String {
        info.addr().to_string()
    }

    #[test]
    fn seed_lists_share_the_first_nodes_credentials() {
        let Deployment::Cluster(nodes) = parse("redis://:secret@10.0.0.1:7000,10.0.0.2:7001,redis://10.0.0.3:7002", None).unwrap() else { panic!() };
        assert_eq!(nodes.iter().map(address).collect::<Vec<_>>(), ["10.0.0.1:7000", "10.0.0.2:7001", "10.0.0.3:7002"]);
        assert_eq!(nodes[1].redis_settings().password(), Some("secret"));
        assert_eq!(nodes[2].redis_settings().password(), None);
        let Deployment::Single(one) = parse("redis://localhost:6379/2", Some("override")).unwrap() else { panic!() };
        assert_eq!(one.redis_settings().db(), 2);
        assert_eq!(one.redis_settings().password(), Some("override"));
    }

    #[test]
    fn sentinel_uris_name_sentinels_and_a_master() {
        let parsed = parse("redis+sentinel://:pw@s1:26379,s2/mymaster/3", None).unwrap();
        let Deployment::Sentinel { sentinels, master, template } = parsed else { panic!() };
        assert_eq!(sentinels, vec![("s1".to_string(), 26379), ("s2".to_string(), 26379)]);
        assert_eq!(master, "mymaster");
        assert_eq!(template.redis_settings().db(), 3);
        assert_eq!(template.redis_settings().password(), Some("pw"));
        let Deployment::Sentinel { template, .. } = parse("rediss+sentinel://s1:26379/mymaster", None).unwrap() else { panic!() };
        assert!(matches!(template.addr(), ConnectionAddr::TcpTls { .. }), "rediss+sentinel:// reaches both over TLS");
        assert!(parse("redis+sentinel://s1:26379", None).is_err());
        assert!(parse("redis+sentinel://s1:26379/", None).is_err());
    }
}
