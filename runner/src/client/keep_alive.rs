//! What a response says about reusing its connection: `Connection: close`, and
//! `Keep-Alive: timeout=<s>, max=<n>` (RFC 9112 9.3; the `Keep-Alive` header of RFC 2068 19.7.1,
//! which HTTP/1.1 servers such as Apache, cpp-httplib (llama.cpp) and Node still send). Pure
//! functions of the headers and the clock; the pool ([`super::transport`]) applies them.

use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::CONNECTION;

/// Reuse limits a server announced for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReusePolicy {
    /// The server will close the connection: never send another request on it.
    pub close: bool,
    /// `timeout`: the server closes the connection after this long idle.
    pub idle_timeout: Option<Duration>,
    /// `max`: requests the server still accepts on the connection, this one included.
    pub max_requests: Option<u32>,
}

impl ReusePolicy {
    /// The policy `headers` announce (a response's).
    pub(crate) fn from_headers(headers: &HeaderMap) -> ReusePolicy {
        let close = headers.get_all(CONNECTION).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"))
            })
        });
        let mut policy = ReusePolicy {
            close,
            ..ReusePolicy::default()
        };
        for value in headers.get_all("keep-alive") {
            let Ok(value) = value.to_str() else { continue };
            for param in value.split(',') {
                let Some((name, number)) = param.split_once('=') else {
                    continue;
                };
                let number = number.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "timeout" => {
                        policy.idle_timeout = number.parse().ok().map(Duration::from_secs);
                    }
                    "max" => policy.max_requests = number.parse().ok(),
                    _ => {}
                }
            }
        }
        policy
    }

    /// Whether the connection may carry another request after this response.
    ///
    /// `max=1` (or `0`) means this response's request was the last one. A `timeout` is kept by
    /// [`ReusePolicy::idle_deadline`] instead.
    pub(crate) fn reusable(&self) -> bool {
        !self.close && self.max_requests.is_none_or(|max| max > 1)
    }

    /// Until when an idle connection may still be reused, counted from `idle_since`: the
    /// server's `timeout` less a safety margin (1 s, or half the timeout when that is shorter)
    /// so a request never races the server's idle close; `None` when the server set no timeout.
    pub(crate) fn idle_deadline(&self, idle_since: Instant) -> Option<Instant> {
        let timeout = self.idle_timeout?;
        let margin = Duration::from_secs(1).min(timeout / 2);
        Some(idle_since + timeout.saturating_sub(margin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn connection_close_and_keep_alive_parameters_are_read() {
        let p = ReusePolicy::from_headers(&headers(&[
            ("connection", "Keep-Alive"),
            ("keep-alive", "timeout=5, max=100"),
        ]));
        assert_eq!(
            p,
            ReusePolicy {
                close: false,
                idle_timeout: Some(Duration::from_secs(5)),
                max_requests: Some(100),
            }
        );
        assert!(p.reusable());
        assert!(
            !ReusePolicy::from_headers(&headers(&[("connection", "upgrade, Close")])).reusable()
        );
        assert!(!ReusePolicy::from_headers(&headers(&[("keep-alive", "max=1")])).reusable());
        assert!(ReusePolicy::from_headers(&headers(&[("keep-alive", "max=2")])).reusable());
        assert_eq!(
            ReusePolicy::from_headers(&headers(&[("keep-alive", "timeout=x, foo")])),
            ReusePolicy::default()
        );
    }

    #[test]
    fn idle_deadline_keeps_a_margin_before_the_servers_timeout() {
        let now = Instant::now();
        let five = ReusePolicy {
            idle_timeout: Some(Duration::from_secs(5)),
            ..ReusePolicy::default()
        };
        assert_eq!(five.idle_deadline(now), Some(now + Duration::from_secs(4)));
        let one = ReusePolicy {
            idle_timeout: Some(Duration::from_secs(1)),
            ..ReusePolicy::default()
        };
        assert_eq!(
            one.idle_deadline(now),
            Some(now + Duration::from_millis(500))
        );
        assert_eq!(ReusePolicy::default().idle_deadline(now), None);
    }
}
