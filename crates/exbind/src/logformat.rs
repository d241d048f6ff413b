//! The shape of a log line: `2026-11-24T07:08:00.123456Z  INFO target: message key=value`,
//! as tracing-subscriber's default format writes it, made cheaper for the one line every
//! request logs: the date and time to the second are formatted once per second per thread,
//! and control characters are escaped by a byte scan of each piece instead of char by char.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut w, SystemTime::now())?;
        let meta = event.metadata();
        write!(w, " {:>5} ", meta.level())?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(w, "{}:", span.name())?;
            }
            w.write_char(' ')?;
        }
        write!(w, "{}:", meta.target())?;
        let mut fields = Fields {
            out: Escaping(&mut w),
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_char('\n')
    }
}

/// RFC 3339 in UTC with microseconds.
fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    thread_local! {
        /// The last second formatted on this thread, and its text up to the seconds.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            *text = exbind_server::clock::utc_second(secs as i64, true);
            *cached = secs;
        }
        write!(w, "{text}.{:06}Z", since.subsec_micros())
    })
}

/// The message, then `name=value` for every other field (strings quoted), space-separated.
struct Fields<'a, W: fmt::Write> {
    out: Escaping<'a, W>,
    result: fmt::Result,
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = if field.name() == "message" {
            write!(self.out, " {value:?}")
        } else {
            write!(self.out, " {}={value:?}", field.name())
        };
    }
}

/// Writes control characters as escapes so a value cannot forge lines or terminal
/// sequences. Pieces without any, nearly all of them, pass through whole.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            if c.is_ascii_control() {
                write!(self.0, "{}", c.escape_default())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let mut s = String::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        write_timestamp(&mut s, at).unwrap();
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        // The same second again, then the next one: the cached text must follow.
        s.clear();
        write_timestamp(&mut s, at + Duration::from_micros(7)).unwrap();
        assert_eq!(s, "2023-11-14T22:13:20.123463Z");
        s.clear();
        write_timestamp(&mut s, at + Duration::from_secs(41)).unwrap();
        assert_eq!(s, "2023-11-14T22:14:01.123456Z");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut s = String::new();
        write!(Escaping(&mut s), "a\nb\u{1b}[31mc é").unwrap();
        assert_eq!(s, "a\\nb\\u{1b}[31mc é");
    }
}
