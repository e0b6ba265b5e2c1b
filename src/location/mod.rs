//! Caller location: PIDF-LO (RFC 4119, RFC 5491) carried by value in multipart SIP bodies
//! (RFC 2046, RFC 5621) and pointed at by the `Geolocation` header (RFC 6442).
//!
//! * [`split_multipart`] splits a `multipart/*` body into [`Part`]s (the switch takes the SDP
//!   part from there).
//! * [`parse_pidf`] reads one PIDF-LO document into [`Location`]s.
//! * [`from_sip_body`] does both for a SIP message body: every `application/pidf+xml`
//!   part (or the body itself).
//! * [`resolve_geolocation`] follows a `Geolocation` header value: `cid:` URIs to the body part
//!   with that Content-ID, other URIs passed through as references.
//!
//! A malformed location never stops a call: the switch logs the [`LocationError`] and routes
//! the call without (or with the other) location.
//!
//! Coordinates are WGS 84 decimal degrees (latitude first, as in EPSG::4326/4979), altitudes
//! and radii in metres.

mod multipart;
mod pidf;

pub use multipart::{Part, split_multipart, split_multipart_partial};
pub use pidf::parse_pidf;

use multipart::media_type;

/// One location of the caller (one shape of one `<gp:location-info>`, RFC 4119 §2.2.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The geometry (WGS 84) or the kind of location that is not decoded yet.
    pub shape: Shape,
    /// The `<gp:method>` of the geopriv (RFC 4119 §2.2.3, e.g. `GPS`, `802.11`, `OTDOA`),
    /// trimmed.
    pub method: Option<String>,
    /// The `<timestamp>` / `<dm:timestamp>` of the tuple, device or person (RFC 3863 §4.1.6,
    /// RFC 4479), as written (an RFC 3339 date-time), trimmed.
    pub timestamp: Option<String>,
    /// Where in the document (and the SIP body) the location was found.
    pub source: Source,
}

/// A location's geometry (RFC 5491 §5.2).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Shape {
    /// `gml:Point` (RFC 5491 §5.2.1): latitude and longitude in decimal degrees, altitude in
    /// metres above the WGS 84 ellipsoid for a 3D point (EPSG::4979).
    Point {
        /// Latitude, decimal degrees, −90 to 90.
        lat: f64,
        /// Longitude, decimal degrees, −180 to 180.
        lon: f64,
        /// Altitude in metres, for a 3D point.
        alt_m: Option<f64>,
    },
    /// `gs:Circle` (RFC 5491 §5.2.3): centre and radius in metres.
    Circle {
        /// Latitude of the centre, decimal degrees.
        lat: f64,
        /// Longitude of the centre, decimal degrees.
        lon: f64,
        /// Radius, metres (uom `urn:ogc:def:uom:EPSG::9001`).
        radius_m: f64,
    },
    /// A shape or location form not decoded yet, by its element's local name: `Polygon`,
    /// `Ellipse`, `ArcBand`, `Sphere`, `Ellipsoid`, `Prism`, `civicAddress`…
    Other(String),
}

/// Which presence element carried the location (RFC 3863 tuple, RFC 4479 device/person).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceElement {
    /// `<tuple>`.
    Tuple,
    /// `<dm:device>`.
    Device,
    /// `<dm:person>`.
    Person,
}

/// Where a [`Location`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The presence element holding the geopriv.
    pub element: PresenceElement,
    /// Its `id` attribute.
    pub id: Option<String>,
    /// The Content-ID (without `<>`) of the body part, when the PIDF came from a multipart
    /// body.
    pub content_id: Option<String>,
}

/// Errors of the location layer; all are the sender's fault (malformed body), none stops
/// the call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// [`split_multipart`] was given a Content-Type that is not `multipart/*`.
    #[error("not a multipart body: {content_type}")]
    NotMultipart {
        /// The media type received.
        content_type: String,
    },
    /// The multipart Content-Type has no (or an empty or over-long) `boundary` parameter
    /// (RFC 2046 §5.1.1).
    #[error("multipart Content-Type without a usable boundary parameter")]
    MissingBoundary,
    /// The body never contains the boundary delimiter.
    #[error("multipart body without any boundary delimiter")]
    NoDelimiter,
    /// The body ends before the close delimiter `--boundary--`.
    #[error("multipart body without its close delimiter (truncated?)")]
    Unterminated,
    /// The PIDF document is not UTF-8.
    #[error("PIDF document is not UTF-8")]
    NotUtf8,
    /// The PIDF document is not well-formed XML.
    #[error("PIDF document is not well-formed XML at octet {position}: {source}")]
    Xml {
        /// Octet offset in the document where the bad construct starts.
        position: u64,
        /// What quick-xml found.
        source: quick_xml::Error,
    },
    /// The PIDF document ends inside an element (truncated) or is empty.
    #[error("PIDF document ends before its root element is closed (truncated?)")]
    UnexpectedEof,
    /// More than 64 levels of nesting or 20 000 elements.
    #[error("PIDF document too deep or too large")]
    TooComplex,
    /// The root element is not `<presence>` in `urn:ietf:params:xml:ns:pidf`.
    #[error("not a PIDF document: root element <{root}>")]
    NotPidf {
        /// Local name of the root element found.
        root: String,
    },
    /// A shape lacks a required child element.
    #[error("{shape} without <{child}>")]
    MissingElement {
        /// The shape (`Point`, `Circle`).
        shape: &'static str,
        /// The missing child (`pos`, `radius`).
        child: &'static str,
    },
    /// A `gml:pos`/`gml:coordinates` is not 2 or 3 numbers.
    #[error("invalid position {text:?}")]
    InvalidPosition {
        /// The position text received.
        text: String,
    },
    /// Latitude outside ±90° or longitude outside ±180°.
    #[error("position out of range: lat {lat}, lon {lon}")]
    OutOfRange {
        /// Latitude received, degrees.
        lat: f64,
        /// Longitude received, degrees.
        lon: f64,
    },
    /// A radius that is not a finite non-negative number.
    #[error("invalid radius {text:?}")]
    InvalidRadius {
        /// The radius text received.
        text: String,
    },
    /// A radius in another unit than metres (`urn:ogc:def:uom:EPSG::9001`).
    #[error("unsupported unit of measure {uom:?}")]
    UnsupportedUom {
        /// The `uom` attribute received.
        uom: String,
    },
    /// A coordinate reference system other than WGS 84 (EPSG::4326 / EPSG::4979).
    #[error("unsupported coordinate reference system {srs:?}")]
    UnsupportedCrs {
        /// The `srsName` received.
        srs: String,
    },
    /// A `Geolocation: <cid:…>` names no body part (RFC 6442 §4.1).
    #[error("Geolocation cid:{cid} matches no body part")]
    DanglingCid {
        /// The Content-ID looked for (percent-decoded, without `<>`).
        cid: String,
    },
    /// A PIDF body part could not be read.
    #[error("PIDF part {content_id:?}: {source}")]
    InPart {
        /// The part's Content-ID, if any.
        content_id: Option<String>,
        /// Why.
        source: Box<LocationError>,
    },
}

impl LocationError {
    /// The `Geolocation-Error` code to report if policy allows telling the caller
    /// (RFC 6442 §4.3): always 100 "Cannot Process Location". The call itself is never
    /// rejected for a bad location.
    pub fn geolocation_error_code(&self) -> u16 {
        100
    }
}

const PIDF: &str = "application/pidf+xml";

/// All locations in a SIP message body, in body order.
///
/// `content_type` is the message's Content-Type value. For `application/pidf+xml` the body
/// is parsed; for `multipart/*` every `application/pidf+xml` part is parsed (nested
/// multiparts too) and its locations carry the part's Content-ID in
/// [`Source::content_id`]; any other type (e.g. a plain `application/sdp`) has no location
/// and gives an empty list.
///
/// # Errors
/// The multipart errors of [`split_multipart`]; a PIDF part that does not parse gives
/// [`LocationError::InPart`] (use [`split_multipart`] and [`parse_pidf`] to keep the other
/// parts' locations).
pub fn from_sip_body(content_type: &str, body: &[u8]) -> Result<Vec<Location>, LocationError> {
    let mut locations = Vec::new();
    collect(content_type, body, None, 0, &mut locations)?;
    Ok(locations)
}

/// Nesting of multiparts followed by [`from_sip_body`].
const MAX_MULTIPART_DEPTH: usize = 4;

fn collect(
    content_type: &str,
    body: &[u8],
    content_id: Option<&str>,
    depth: usize,
    out: &mut Vec<Location>,
) -> Result<(), LocationError> {
    let essence = media_type(content_type).0;
    if essence == PIDF {
        let found = parse_pidf(body).map_err(|e| LocationError::InPart {
            content_id: content_id.map(str::to_owned),
            source: Box::new(e),
        })?;
        out.extend(found.into_iter().map(|mut l| {
            l.source.content_id = content_id.map(str::to_owned);
            l
        }));
    } else if essence.starts_with("multipart/") && depth < MAX_MULTIPART_DEPTH {
        for part in split_multipart(content_type, body)? {
            collect(
                &part.content_type,
                &part.body,
                part.content_id.as_deref(),
                depth + 1,
                out,
            )?;
        }
    }
    Ok(())
}

/// One location URI of a `Geolocation` header, resolved (RFC 6442 §4.1).
#[derive(Debug, Clone, PartialEq)]
pub enum Geolocation {
    /// A `cid:` URI: the locations of the body part with that Content-ID.
    ByValue {
        /// The Content-ID (without `<>`).
        content_id: String,
        /// The locations of that part.
        locations: Vec<Location>,
    },
    /// Any other URI (`https:`, `sip:`, `pres:`…): a location by reference, to pass on
    /// unchanged (dereferencing is the PSAP's job).
    ByReference(String),
}

/// Resolve every URI of a `Geolocation` header value (comma-separated `<uri>;params`,
/// RFC 6442 §4.1), in header order, against the message body.
///
/// Several `Geolocation` header fields are joined with `, ` before the call. A `cid:` URI
/// (RFC 2392, percent-decoded) is matched against the Content-ID of the multipart body's
/// parts.
///
/// # Errors
/// The outer error is a multipart body that cannot be split. Per URI:
/// [`LocationError::DanglingCid`] if no part has that Content-ID, or the PIDF error of that
/// part.
pub fn resolve_geolocation(
    geolocation: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<Result<Geolocation, LocationError>>, LocationError> {
    let essence = media_type(content_type).0;
    let parts = if essence.starts_with("multipart/") {
        split_multipart(content_type, body)?
    } else {
        Vec::new()
    };
    Ok(geolocation_uris(geolocation)
        .into_iter()
        .map(|uri| {
            let Some(cid) = uri
                .get(..4)
                .filter(|scheme| scheme.eq_ignore_ascii_case("cid:"))
                .and_then(|_| uri.get(4..))
            else {
                return Ok(Geolocation::ByReference(uri));
            };
            let cid = percent_decode(cid);
            let part = parts
                .iter()
                .find(|p| p.content_id.as_deref() == Some(cid.as_str()))
                .ok_or_else(|| LocationError::DanglingCid { cid: cid.clone() })?;
            let mut locations = Vec::new();
            collect(
                &part.content_type,
                &part.body,
                Some(&cid),
                1,
                &mut locations,
            )?;
            Ok(Geolocation::ByValue {
                content_id: cid,
                locations,
            })
        })
        .collect())
}

/// The URIs of a `Geolocation` header value: each `<…>`, parameters skipped.
fn geolocation_uris(value: &str) -> Vec<String> {
    let mut uris = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('>') else { break };
        uris.push(after.get(..close).unwrap_or_default().trim().to_owned());
        rest = after.get(close + 1..).unwrap_or_default();
        // Skip the parameters up to the next comma outside quotes.
        let mut quoted = false;
        let mut next = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    next = i;
                    break;
                }
                _ => {}
            }
        }
        rest = rest.get(next..).unwrap_or_default();
    }
    uris
}

/// `%XX` decoding of a `cid:` URL (RFC 2392 §2); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Arbitrary bodies and mutated PIDF documents never panic.
        #[test]
        fn arbitrary_input_does_not_panic(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            flips in proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 0..8),
        ) {
            let _ = from_sip_body("multipart/mixed; boundary=b", &body);
            let _ = from_sip_body("application/pidf+xml", &body);
            let _ = resolve_geolocation("<cid:a@b>, <https://x>", "multipart/related;boundary=\"b\"", &body);
            let mut doc = SAMPLE.to_vec();
            for (at, byte) in flips {
                if let Some(b) = doc.get_mut(at % SAMPLE.len()) {
                    *b = byte;
                }
            }
            let _ = parse_pidf(&doc);
        }
    }

    const SAMPLE: &[u8] = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
        xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml"
        xmlns:gs="http://www.opengis.net/pidflo/1.0"><tuple id="t"><status><gp:geopriv>
        <gp:location-info><gs:Circle srsName="urn:ogc:def:crs:EPSG::4326">
        <gml:pos>42.5463 -73.2512</gml:pos><gs:radius uom="urn:ogc:def:uom:EPSG::9001">850.24
        </gs:radius></gs:Circle><gml:Point><gml:coordinates>37:46:30N 122:25:10W</gml:coordinates>
        </gml:Point></gp:location-info><gp:method>GPS</gp:method></gp:geopriv></status>
        <timestamp>2026-11-29T10:00:00Z</timestamp></tuple></presence>"#;

    #[test]
    fn sample_document_parses() {
        let l = parse_pidf(SAMPLE).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].shape,
            Shape::Circle {
                lat: 42.5463,
                lon: -73.2512,
                radius_m: 850.24
            }
        );
        assert!(matches!(l[1].shape, Shape::Point { alt_m: None, .. }));
    }

    #[test]
    fn geolocation_header_uris() {
        assert_eq!(
            geolocation_uris(
                "<cid:a%40b@x>;inserted-by=\"a,<b>\", <https://lis.example.com/1> ,<sip:c@d>"
            ),
            vec!["cid:a%40b@x", "https://lis.example.com/1", "sip:c@d"]
        );
        assert!(geolocation_uris("garbage").is_empty());
        assert_eq!(percent_decode("a%40b%zz%4"), "a@b%zz%4");
    }

    #[test]
    fn single_pidf_body_and_unrelated_body() {
        let pidf = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
            xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml">
            <tuple id="t"><status><gp:geopriv><gp:location-info><gml:Point>
            <gml:pos>10 20</gml:pos></gml:Point></gp:location-info></gp:geopriv></status>
            <timestamp> 2026-11-29T10:00:00Z </timestamp></tuple></presence>"#;
        let l = from_sip_body("Application/PIDF+XML", pidf).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].timestamp.as_deref(), Some("2026-11-29T10:00:00Z"));
        assert_eq!(l[0].source.content_id, None);
        assert!(
            from_sip_body("application/sdp", b"v=0\r\n")
                .unwrap()
                .is_empty()
        );
    }
}
