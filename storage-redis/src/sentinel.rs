//! Finding the current master through Redis Sentinel. Every connection korvet opens to a
//! Sentinel-watched Redis asks the Sentinels first, so a connection opened again after a
//! failover (see [`crate::connection`]) reaches the promoted replica.

use redis::{ConnectionInfo, RedisError};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SentinelSource {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    /// Credentials and database for the master; its address is replaced by the one Sentinel names.
    pub template: ConnectionInfo,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl SentinelSource {
    fn sentinel_info(&self, host: &str, port: u16) -> ConnectionInfo {
        // Sentinels are asked without the master's credentials or database, over TLS when the
        // master is.
        crate::topology::at_address(&self.template, host.to_string(), port).set_redis_settings(redis::RedisConnectionInfo::default())
    }

    fn master_at(&self, reply: Option<(String, u16)>) -> Result<ConnectionInfo, RedisError> {
        let (host, port) = reply.ok_or_else(|| RedisError::from((redis::ErrorKind::MasterNameNotFoundBySentinel, "Sentinel knows no master named", self.master.clone())))?;
        Ok(crate::topology::at_address(&self.template, host, port))
    }

    /// The master's connection settings, from the first Sentinel that answers.
    pub async fn master_info(&self) -> Result<ConnectionInfo, RedisError> {
        let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(self.connect_timeout)).set_response_timeout(Some(self.response_timeout));
        let mut last = None;
        for (host, port) in &self.sentinels {
            let asked = async {
                let client = redis::Client::open(self.sentinel_info(host, *port))?;
                let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
                redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&self.master).query_async::<Option<(String, u16)>>(&mut conn).await
            };
            match asked.await {
                Ok(reply) => return self.master_at(reply),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::EmptySentinelList, "no Sentinel configured"))))
    }

    /// The same, blocking (for the read connection's thread).
    pub fn master_info_blocking(&self) -> Result<ConnectionInfo, RedisError> {
        let mut last = None;
        for (host, port) in &self.sentinels {
            let asked = (|| {
                let client = redis::Client::open(self.sentinel_info(host, *port))?;
                let mut conn = client.get_connection_with_timeout(self.connect_timeout)?;
                conn.set_read_timeout(Some(self.response_timeout))?;
                redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&self.master).query::<Option<(String, u16)>>(&mut conn)
            })();
            match asked {
                Ok(reply) => return self.master_at(reply),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::EmptySentinelList, "no Sentinel configured"))))
    }
}
