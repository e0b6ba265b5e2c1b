//! Advanced Mobile Location (ETSI TS 103 625): the handset's own fix, sent by SMS (§7, the
//! `A"ML=1;lt=…;ml=…` text) or by HTTPS POST (§8, an `application/x-www-form-urlencoded`
//! body), read into an [`AmlReport`] and a [`Location`].

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use super::{Confidence, Location, LocationError, Origin, Pdf, PresenceElement, Shape, Source};

/// The longest AML message read, characters (an SMS concatenation is far shorter).
const MAX_LEN: usize = 4096;

/// One AML report (ETSI TS 103 625 §7.5 / §8).
#[derive(Debug, Clone, PartialEq)]
pub struct AmlReport {
    /// The message's version (`A"ML=1` → `1`, the form's `v=3` → `3`).
    pub version: String,
    /// Latitude, WGS 84 decimal degrees.
    pub lat: f64,
    /// Longitude, WGS 84 decimal degrees.
    pub lon: f64,
    /// Radius of the uncertainty circle, metres (`rd`, `location_accuracy`).
    pub radius_m: Option<f64>,
    /// Altitude, metres (`location_altitude`, HTTPS form only).
    pub alt_m: Option<f64>,
    /// Time of positioning (`top`, UTC; `location_time`, milliseconds since the epoch).
    pub time_of_positioning: Option<DateTime<Utc>>,
    /// Level of confidence, percent (`lc`, `location_certainty`).
    pub confidence_percent: Option<f64>,
    /// Positioning method as sent: SMS `pm` letter (`G` GNSS, `W` Wi-Fi, `C` cell, `N` none)
    /// or the form's `location_source` (`GPS`, `WiFi`, `Cell`).
    pub positioning_method: Option<String>,
    /// IMSI (`si`, `device_imsi`). Personal data.
    pub imsi: Option<String>,
    /// IMEI (`ei`, `device_imei`). Personal data.
    pub imei: Option<String>,
    /// Mobile country code (`mcc`, `cell_network_mcc`).
    pub mcc: Option<String>,
    /// Mobile network code (`mnc`, `cell_network_mnc`).
    pub mnc: Option<String>,
    /// The caller's number (`device_number`, HTTPS form only), used to match the call.
    pub caller_number: Option<String>,
    /// Floor (`location_floor`, HTTPS form only), as sent.
    pub floor: Option<String>,
    /// Which transport the report came by: [`Origin::AmlSms`] or [`Origin::AmlHttps`].
    pub origin: Origin,
}

impl AmlReport {
    /// The report as a [`Location`]: a Circle when a radius was sent, else a Point; the
    /// method spelled out (`GNSS`, `Wi-Fi`, `Cell`), the confidence with `pdf` unknown, the
    /// time of positioning as RFC 3339 UTC, the source the handset (`Device`).
    pub fn to_location(&self) -> Location {
        let shape = match self.radius_m {
            Some(radius_m) => Shape::Circle {
                lat: self.lat,
                lon: self.lon,
                radius_m,
            },
            None => Shape::Point {
                lat: self.lat,
                lon: self.lon,
                alt_m: self.alt_m,
            },
        };
        let method = self.positioning_method.as_deref().map(|m| {
            match m {
                "G" | "GPS" => "GNSS",
                "W" | "WiFi" | "WIFI" => "Wi-Fi",
                "C" | "Cell" | "CELL" => "Cell",
                "N" => "None",
                other => other,
            }
            .to_owned()
        });
        Location {
            shape,
            method,
            timestamp: self
                .time_of_positioning
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            source: Source {
                element: PresenceElement::Device,
                id: None,
                content_id: None,
                origin: self.origin,
            },
            // RFC 7459 confidence is 0 < p ≤ 100: an `lc=0` means "not known".
            confidence: self
                .confidence_percent
                .filter(|p| *p > 0.0)
                .map(|p| Confidence {
                    percent: Some(p),
                    pdf: Pdf::Unknown,
                }),
            usage_rules: Default::default(),
            provided_by: None,
        }
    }
}

/// Parse an AML SMS text (ETSI TS 103 625 §7.5): `A"ML=<version>` then `;`-separated
/// `key=value` fields ending with `ml`, the length of the whole message in characters.
///
/// Trailing white space (a newline added by a file or a gateway) is not counted.
///
/// # Errors
/// [`LocationError::NotAml`] without the `A"ML=` header, [`LocationError::AmlMissingField`]
/// when `ml`, `lt` or `lg` is missing (a lost SMS segment),
/// [`LocationError::AmlLengthMismatch`] when `ml` is not the real length (corrupt or
/// truncated), [`LocationError::AmlInvalidField`] for an unreadable value (and latitude or
/// longitude out of range).
pub fn parse_aml_sms(text: &str) -> Result<AmlReport, LocationError> {
    let text = text.trim_end();
    let header = text.get(..5).filter(|h| h.eq_ignore_ascii_case("A\"ML="));
    if header.is_none() || text.len() > MAX_LEN {
        return Err(LocationError::NotAml);
    }
    let fields: Vec<(&str, &str)> = text
        .get(5..)
        .unwrap_or_default()
        .split(';')
        .enumerate()
        .map(|(i, f)| match i {
            0 => ("version", f),
            _ => f.split_once('=').unwrap_or((f, "")),
        })
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let ml = field("ml").ok_or(LocationError::AmlMissingField { field: "ml" })?;
    let declared = ml.parse::<usize>().map_err(|_| invalid("ml", ml))?;
    let actual = text.chars().count();
    if declared != actual {
        return Err(LocationError::AmlLengthMismatch { declared, actual });
    }
    let lat = coordinate(field("lt"), "lt", 90.0)?;
    let lon = coordinate(field("lg"), "lg", 180.0)?;
    let time_of_positioning = field("top")
        .map(|t| {
            NaiveDateTime::parse_from_str(t, "%Y%m%d%H%M%S")
                .map(|n| Utc.from_utc_datetime(&n))
                .map_err(|_| invalid("top", t))
        })
        .transpose()?;
    Ok(AmlReport {
        version: field("version").unwrap_or_default().to_owned(),
        lat,
        lon,
        radius_m: length(field("rd"), "rd")?,
        alt_m: None,
        time_of_positioning,
        confidence_percent: percent(field("lc"), "lc")?,
        positioning_method: field("pm").map(str::to_owned),
        imsi: field("si").map(str::to_owned),
        imei: field("ei").map(str::to_owned),
        mcc: field("mcc").map(str::to_owned),
        mnc: field("mnc").map(str::to_owned),
        caller_number: None,
        floor: None,
        origin: Origin::AmlSms,
    })
}

/// Parse an AML HTTPS POST body (ETSI TS 103 625 §8, `application/x-www-form-urlencoded`):
/// `v`, `device_number`, `location_latitude`, `location_longitude`, `location_time`
/// (milliseconds since 1970-01-01 UTC), `location_accuracy` (metres), `location_source`,
/// `location_certainty` (percent), `location_altitude`, `location_floor`, `device_imei`,
/// `device_imsi`, `cell_network_mcc`/`mnc` (or `cell_home_*`).
///
/// # Errors
/// [`LocationError::NotAml`] without `v`, [`LocationError::AmlMissingField`] without
/// latitude or longitude, [`LocationError::AmlInvalidField`] for an unreadable value.
pub fn parse_aml_https(body: &str) -> Result<AmlReport, LocationError> {
    if body.len() > MAX_LEN {
        return Err(LocationError::NotAml);
    }
    let fields: Vec<(String, String)> = body
        .trim()
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let version = field("v").ok_or(LocationError::NotAml)?;
    let lat = coordinate(field("location_latitude"), "location_latitude", 90.0)?;
    let lon = coordinate(field("location_longitude"), "location_longitude", 180.0)?;
    let time_of_positioning = field("location_time")
        .map(|t| {
            t.parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis)
                .ok_or_else(|| invalid("location_time", t))
        })
        .transpose()?;
    let alt_m = field("location_altitude")
        .map(|a| {
            a.parse::<f64>()
                .ok()
                .filter(|a| a.is_finite())
                .ok_or_else(|| invalid("location_altitude", a))
        })
        .transpose()?;
    let owned = |name: &str| field(name).map(str::to_owned);
    Ok(AmlReport {
        version: version.to_owned(),
        lat,
        lon,
        radius_m: length(field("location_accuracy"), "location_accuracy")?,
        alt_m,
        time_of_positioning,
        confidence_percent: percent(field("location_certainty"), "location_certainty")?,
        positioning_method: owned("location_source"),
        imsi: owned("device_imsi"),
        imei: owned("device_imei"),
        mcc: owned("cell_network_mcc").or_else(|| owned("cell_home_mcc")),
        mnc: owned("cell_network_mnc").or_else(|| owned("cell_home_mnc")),
        caller_number: owned("device_number"),
        floor: owned("location_floor"),
        origin: Origin::AmlHttps,
    })
}

/// A call an AML report may belong to (a live call, or one ended recently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmlCallCandidate<'a> {
    /// vigie's call id.
    pub call_id: &'a str,
    /// The caller's number as received (P-Asserted-Identity / From user part).
    pub caller_number: Option<&'a str>,
    /// When the INVITE arrived.
    pub received: DateTime<Utc>,
    /// When the call ended, if it has.
    pub ended: Option<DateTime<Utc>>,
}

/// How long before a call's INVITE an AML report may arrive (the handset starts positioning
/// when the emergency number is dialled, and SMS and SIP take different paths), seconds.
pub const AML_EARLY_SECONDS: i64 = 30;

/// Find the call an AML report belongs to (ETSI TS 103 625 §6: AML is triggered by the
/// emergency call and sent while it lasts): the caller number must be the same number as
/// `sender` (the SMS originator, or the HTTPS form's `device_number`) — compared on digits
/// only, ignoring international prefixes (`+`, `00`) and a national trunk `0`, on the last 9
/// digits at least 8 long — and `arrived` must fall between `AML_EARLY_SECONDS` before the
/// INVITE and `after_end` after the call's end (a live call has no end). Among several
/// matches the most recently received call wins. Pure: the time is passed in.
pub fn correlate<'a>(
    sender: &str,
    arrived: DateTime<Utc>,
    calls: &[AmlCallCandidate<'a>],
    after_end: chrono::Duration,
) -> Option<&'a str> {
    calls
        .iter()
        .filter(|c| c.caller_number.is_some_and(|n| same_number(n, sender)))
        .filter(|c| arrived >= c.received - chrono::Duration::seconds(AML_EARLY_SECONDS))
        .filter(|c| c.ended.is_none_or(|end| arrived <= end + after_end))
        .max_by_key(|c| c.received)
        .map(|c| c.call_id)
}

/// Two telephone numbers are the same subscriber: digits compared on their last 9 (the
/// Moroccan national significant number's length), after dropping `00`/`0` prefixes.
fn same_number(a: &str, b: &str) -> bool {
    fn significant(n: &str) -> String {
        let digits: String = n
            .trim()
            .trim_start_matches("sip:")
            .trim_start_matches("tel:")
            .split(['@', ';'])
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let digits = digits.trim_start_matches('0');
        let skip = digits.len().saturating_sub(9);
        digits.get(skip..).unwrap_or_default().to_owned()
    }
    let (a, b) = (significant(a), significant(b));
    a.len() >= 8 && a == b
}

fn invalid(field: &'static str, value: &str) -> LocationError {
    LocationError::AmlInvalidField {
        field,
        value: value.chars().take(64).collect(),
    }
}

fn coordinate(value: Option<&str>, field: &'static str, max: f64) -> Result<f64, LocationError> {
    let value = value.ok_or(LocationError::AmlMissingField { field })?;
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && v.abs() <= max)
        .ok_or_else(|| invalid(field, value))
}

fn length(value: Option<&str>, field: &'static str) -> Result<Option<f64>, LocationError> {
    value
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| invalid(field, v))
        })
        .transpose()
}

fn percent(value: Option<&str>, field: &'static str) -> Result<Option<f64>, LocationError> {
    value
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| invalid(field, v))
        })
        .transpose()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` an octet.
fn form_decode(s: &str) -> String {
    super::percent_decode(&s.replace('+', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_fields_and_errors() {
        let msg = "A\"ML=1;lt=-1.5;lg=+2.25;rd=7;top=20260101000000;lc=80;pm=W;ml=";
        let full = format!("{msg}{}", msg.len() + 2);
        let r = parse_aml_sms(&full).unwrap();
        assert_eq!((r.lat, r.lon, r.radius_m), (-1.5, 2.25, Some(7.0)));
        assert_eq!(r.confidence_percent, Some(80.0));
        assert_eq!(
            r.time_of_positioning.unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        let l = r.to_location();
        assert_eq!(l.method.as_deref(), Some("Wi-Fi"));
        assert_eq!(l.timestamp.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(matches!(parse_aml_sms("hello"), Err(LocationError::NotAml)));
        assert!(matches!(
            parse_aml_sms("A\"ML=1;lt=1;lg=2;ml=3"),
            Err(LocationError::AmlLengthMismatch {
                declared: 3,
                actual: 21
            })
        ));
        assert!(matches!(
            parse_aml_sms("A\"ML=1;lt=91;lg=2;ml=23"),
            Err(LocationError::AmlInvalidField { field: "lt", .. })
        ));
        assert!(matches!(
            parse_aml_sms("A\"ML=1;lg=2;ml=17"),
            Err(LocationError::AmlMissingField { field: "lt" })
        ));
        // Multi-octet characters count as one character each, never split a slice.
        assert!(parse_aml_sms("A\"MLé;lt=é").is_err());
    }

    #[test]
    fn correlation_by_number_and_time() {
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let calls = [
            AmlCallCandidate {
                call_id: "old",
                caller_number: Some("+212 661-234567"),
                received: t(-3600),
                ended: Some(t(-3000)),
            },
            AmlCallCandidate {
                call_id: "live",
                caller_number: Some("sip:0661234567@192.0.2.1;user=phone"),
                received: t(0),
                ended: None,
            },
            AmlCallCandidate {
                call_id: "other",
                caller_number: Some("0661234568"),
                received: t(5),
                ended: None,
            },
        ];
        let grace = chrono::Duration::seconds(120);
        assert_eq!(
            correlate("00212661234567", t(10), &calls, grace),
            Some("live")
        );
        // Before the live call (within the early margin) it still matches.
        assert_eq!(
            correlate("+212661234567", t(-20), &calls, grace),
            Some("live")
        );
        // Long before: only the old call's window could hold it, and it is closed.
        assert_eq!(correlate("+212661234567", t(-900), &calls, grace), None);
        // Just after the old call's end, before the live call: the old one.
        assert_eq!(
            correlate("+212661234567", t(-2950), &calls, grace),
            Some("old")
        );
        assert_eq!(correlate("+212600000000", t(10), &calls, grace), None);
        // Too short to identify anyone.
        assert_eq!(correlate("4567", t(10), &calls, grace), None);
    }

    #[test]
    fn https_form_decoding() {
        let r =
            parse_aml_https("v=3&device_number=%2B33+1&location_latitude=1&location_longitude=2")
                .unwrap();
        assert_eq!(r.caller_number.as_deref(), Some("+33 1"));
        assert_eq!(r.radius_m, None);
        assert!(matches!(r.to_location().shape, Shape::Point { .. }));
        // A certainty of 0 is "unknown", not an RFC 7459 confidence (0 < p ≤ 100).
        let r =
            parse_aml_https("v=3&location_latitude=1&location_longitude=2&location_certainty=0")
                .unwrap();
        assert_eq!(r.confidence_percent, Some(0.0));
        assert_eq!(r.to_location().confidence, None);
        assert!(matches!(parse_aml_https("a=b"), Err(LocationError::NotAml)));
        assert!(matches!(
            parse_aml_https("v=3&location_latitude=1&location_longitude=2&location_time=x"),
            Err(LocationError::AmlInvalidField {
                field: "location_time",
                ..
            })
        ));
    }
}
