//! Redis: the connection, the key names and the three atomic scripts every replica runs against
//! the shared usage (window leases, concurrency leases, spend).
//!
//! Redis holds only usage; every quota comes with each call from the caller's configuration, so
//! a reload changing a quota takes effect on the next lease. Each script touches one key, and
//! every key of a scope shares one hash tag (`{…}`), so the design works on Redis Cluster.

use crate::config::RedisSettings;
use crate::governance::limits::Scope;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

/// A lease of `want` cells from the scope's current window, on Redis's clock (`TIME`), so every
/// replica agrees on where windows start. Before granting it gives back `back` unused cells when
/// they belong to the current window, and charges `extra` (tokens used beyond what was
/// reserved) to it. Usage beyond the quota (debt) carries over into the next windows; the rest
/// of a window's usage ends with it.
///
/// KEYS[1] scope hash {w = window index, u = used}; ARGV: period_ms, amount, want, back,
/// back_window, extra. Returns {granted, window, ms left in the window, amount - used}.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local cur = math.floor(now / period)
local state = redis.call('HMGET', KEYS[1], 'w', 'u')
local w = tonumber(state[1]) or cur
local used = tonumber(state[2]) or 0
if w < cur then
  used = math.max(0, used - amount * (cur - w))
end
if tonumber(ARGV[5]) == cur then
  used = math.max(0, used - tonumber(ARGV[4]))
end
used = used + tonumber(ARGV[6])
local granted = math.max(0, math.min(tonumber(ARGV[3]), amount - used))
used = used + granted
redis.call('HSET', KEYS[1], 'w', cur, 'u', used)
local windows = math.max(2, math.ceil(used / amount) + 1)
redis.call('PEXPIRE', KEYS[1], period * windows)
return {granted, cur, period - (now % period), amount - used}
";

/// A replica's concurrency lease: sets this replica's held slots to `want` (at least `must`, the
/// requests it already runs) as far as `cap` minus the other live leases allows; leases not
/// renewed within their TTL are dropped, so a crashed replica's slots come back.
///
/// KEYS[1] scope hash {replica = "held:expires_ms"}; ARGV: replica, want, must, cap, ttl_ms.
/// Returns {held, others}.
const SLOTS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local others = 0
for i = 1, #all, 2 do
  local held, expires = string.match(all[i + 1], '(%d+):(%d+)')
  if tonumber(expires) <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] ~= ARGV[1] then
    others = others + tonumber(held)
  end
end
local want = tonumber(ARGV[2])
local must = tonumber(ARGV[3])
local held = math.max(must, math.min(want, tonumber(ARGV[4]) - others))
if held > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], held .. ':' .. (now + tonumber(ARGV[5])))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) * 2)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return {held, others}
";

static LEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(LEASE));
static SLOTS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SLOTS));

/// What Redis granted for one window lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leased {
    pub granted: u64,
    pub window: u64,
    pub left_in_window: Duration,
    /// The quota minus everything charged to the window (negative in debt).
    pub pool: i64,
}

/// The escaped hash tag of a scope: every key of one scope lands in one Cluster slot.
fn tag(scope: &Scope) -> String {
    let mut out = String::from("sluice:{");
    let mut push = |text: &str| {
        for c in text.chars() {
            // Braces would end the hash tag and colons separate the parts: escaped like a URL.
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?') {
                out.push(c);
            } else {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    };
    match scope {
        Scope::Org(org) => {
            push("o:");
            push(org);
        }
        Scope::Key(key) => {
            push("k:");
            push(key);
        }
        Scope::OrgModel(org, model) => {
            push("m:");
            push(org);
            push(":");
            push(model);
        }
    }
    out.push('}');
    out
}

/// The key of a scope's requests (`r`) or tokens (`t`) windows of one period length: a period
/// change starts a new count rather than reinterpret the old one.
pub fn window_key(scope: &Scope, kind: char, period: Duration) -> String {
    format!("{}:{kind}:{}", tag(scope), period.as_millis())
}

/// The key of a scope's concurrency leases.
pub fn slots_key(scope: &Scope) -> String {
    format!("{}:c", tag(scope))
}

/// The key of an org's spend in one budget period (`d` or `m` and its index).
pub fn spend_key(org: &str, period: char, index: u32) -> String {
    format!("{}:s:{period}:{index}", tag(&Scope::Org(org.into())))
}

/// The connection to Redis, shared by every lease call (one multiplexed connection that
/// reconnects by itself). Made on the first call: the connection manager needs the runtime the
/// calls run on, which the process builds after the configuration is read.
pub struct Store {
    client: redis::Client,
    config: ConnectionManagerConfig,
    conn: std::sync::OnceLock<ConnectionManager>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

/// A failed Redis call, as logged: the kind and the client's text (never the password, which
/// the client does not echo).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered with an unexpected shape")]
    Shape,
}

impl Store {
    /// A lazily connecting store; the first call connects.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        use redis::IntoConnectionInfo as _;
        let mut info = settings.url.as_str().into_connection_info()?;
        let mut redis_info = info.redis_settings().clone();
        if let Some(user) = &settings.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(password) = &settings.password {
            redis_info = redis_info.set_password(password.expose());
        }
        info = info.set_redis_settings(redis_info);
        let client = match &settings.ca_pem {
            // A private CA instead of the system's roots (`limits.ca_file`).
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )?,
            None => redis::Client::open(info)?,
        };
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            client,
            config,
            conn: std::sync::OnceLock::new(),
        })
    }

    /// The shared connection (a cheap clone of one multiplexed connection).
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let made =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?;
        // Two first calls at once: one manager wins, the other is dropped unused.
        Ok(self.conn.get_or_init(|| made).clone())
    }

    /// Leases from a scope's window (see [`LEASE`]).
    pub async fn lease(
        &self,
        key: &str,
        period: Duration,
        amount: u64,
        want: u64,
        back: (u64, u64),
        extra: u64,
    ) -> Result<Leased, StoreError> {
        let mut conn = self.conn()?;
        let reply: Vec<i64> = LEASE_SCRIPT
            .key(key)
            .arg(period.as_millis().max(1) as u64)
            .arg(amount)
            .arg(want)
            .arg(back.0)
            .arg(back.1)
            .arg(extra)
            .invoke_async(&mut conn)
            .await?;
        let [granted, window, left, pool] = reply[..] else {
            return Err(StoreError::Shape);
        };
        Ok(Leased {
            granted: granted.max(0) as u64,
            window: window.max(0) as u64,
            left_in_window: Duration::from_millis(left.max(0) as u64),
            pool,
        })
    }

    /// Sets this replica's concurrency lease (see [`SLOTS`]); returns the slots it now holds.
    pub async fn slots(
        &self,
        key: &str,
        replica: &str,
        want: u32,
        must: u32,
        cap: u32,
        ttl: Duration,
    ) -> Result<u32, StoreError> {
        let mut conn = self.conn()?;
        let reply: Vec<i64> = SLOTS_SCRIPT
            .key(key)
            .arg(replica)
            .arg(want)
            .arg(must)
            .arg(cap)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        let [held, _others] = reply[..] else {
            return Err(StoreError::Shape);
        };
        Ok(u32::try_from(held.max(0)).unwrap_or(u32::MAX))
    }

    /// Adds each org's unsent spend to its period counters and returns the totals, in one round
    /// trip: `(key, delta)` in, the counter after the increment out (same order).
    pub async fn add_spend(
        &self,
        adds: &[(String, u64)],
        ttl: Duration,
    ) -> Result<Vec<u64>, StoreError> {
        let mut pipe = redis::pipe();
        for (key, delta) in adds {
            pipe.cmd("INCRBY").arg(key).arg(*delta);
            pipe.cmd("PEXPIRE")
                .arg(key)
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        let mut conn = self.conn()?;
        let totals: Vec<i64> = pipe.query_async(&mut conn).await?;
        Ok(totals.into_iter().map(|t| t.max(0) as u64).collect())
    }

    /// A liveness check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_scope_share_a_hash_tag_that_no_name_can_break() {
        let scope = Scope::OrgModel("ac}me".into(), "gpt-4o:mini".into());
        let requests = window_key(&scope, 'r', Duration::from_secs(60));
        assert_eq!(requests, "sluice:{m%3Aac%7Dme%3Agpt-4o%3Amini}:r:60000");
        assert!(slots_key(&scope).starts_with("sluice:{m%3Aac%7Dme%3Agpt-4o%3Amini}:"));
        assert_eq!(spend_key("acme", 'd', 7), "sluice:{o%3Aacme}:s:d:7");
    }
}
