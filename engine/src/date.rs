//! Calendar dates from milliseconds since the Unix epoch (UTC), for the JavaScript
//! date strings that Node's wire formats carry.

/// A moment given in milliseconds since the Unix epoch, as JavaScript's
/// `Date.prototype.toJSON` writes it (`2026-12-03T09:01:02.000Z`): how a `Date`
/// argument of a Socket.IO event reaches a client.
pub fn js_date_json(ms: i64) -> String {
    Civil::from_millis(ms).iso()
}

/// A moment in UTC.
pub(crate) struct Civil {
    pub(crate) year: i64,
    /// 1 to 12.
    pub(crate) month: u32,
    /// 1 to 31.
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) milli: u32,
    /// 0 is Sunday.
    pub(crate) weekday: u32,
}

impl Civil {
    /// The moment `ms` milliseconds after 1970-01-01T00:00:00Z (before it if
    /// negative), by Howard Hinnant's days-from-civil inverse.
    pub(crate) fn from_millis(ms: i64) -> Self {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rem / 3_600_000,
            minute: rem / 60_000 % 60,
            second: rem / 1000 % 60,
            milli: rem % 1000,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// `Date.prototype.toJSON`: `2026-12-03T09:01:02.000Z`.
    pub(crate) fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.milli
        )
    }

    /// `Date.prototype.toString` in UTC: `Thu Dec 03 2026 09:01:02 GMT+0000
    /// (Coordinated Universal Time)`.
    pub(crate) fn js_string(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{} {} {:02} {:04} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
            DAYS[self.weekday as usize],
            MONTHS[(self.month - 1) as usize],
            self.day,
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_javascript_writes_them() {
        let epoch = Civil::from_millis(0);
        assert_eq!(epoch.iso(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            epoch.js_string(),
            "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
        let t = Civil::from_millis(1_796_288_462_123);
        assert_eq!(t.iso(), "2026-12-03T09:01:02.123Z");
        assert_eq!(
            t.js_string(),
            "Thu Dec 03 2026 09:01:02 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(Civil::from_millis(-1).iso(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Civil::from_millis(951_782_400_000).iso(),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
