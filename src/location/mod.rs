//! Caller location: PIDF-LO (RFC 4119, RFC 5491) carried by value in multipart SIP bodies
//! (RFC 2046, RFC 5621) and pointed at by the `Geolocation` header (RFC 6442).
//!
//! * [`split_multipart`] splits a `multipart/*` body into [`Part`]s (the switch takes the SDP
//!   part from there).
//! * [`parse_pidf`] reads one PIDF-LO document into [`Location`]s.
//! * [`from_sip_body`] does both for a SIP message body: every `application/pidf+xml`
//!   part (or the body itself).
//! * [`resolve_geolocation`] follows a `Geolocation` header value: `cid:` URIs to the body part
//!   with that Content-ID, other URIs passed through as references;
//!   [`geolocation_routing`] reads `Geolocation-Routing` (RFC 6442 §4.2).
//! * [`additional_data`]: RFC 7852 `Call-Info` purposes `EmergencyCallData.*` by value and by
//!   reference, and the ProviderInfo, ServiceInfo, DeviceInfo, SubscriberInfo, Comment (and
//!   RFC 8147 Control) blocks.
//! * [`aml`]: Advanced Mobile Location (ETSI TS 103 625) SMS and HTTPS forms.
//!
//! A malformed location never stops a call: the switch logs the [`LocationError`] and routes
//! the call without (or with the other) location.
//!
//! Coordinates are WGS 84 decimal degrees (latitude first, as in EPSG::4326/4979), altitudes
//! and radii in metres.

pub mod additional_data;
pub mod aml;
mod multipart;
mod pidf;

pub use additional_data::{
    AdditionalData, AdditionalDataEntry, DataReference, parse_additional_data, parse_call_info,
    resolve_additional_data,
};
pub use aml::{AmlCallCandidate, AmlReport, parse_aml_https, parse_aml_sms};
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
    /// The `<con:confidence>` of the location-info (RFC 7459 §5.1); `None` when absent, which
    /// RFC 7459 §4 reads as "unknown" (RFC 5491 §4 used to assume 95 %).
    pub confidence: Option<Confidence>,
    /// The geopriv's usage rules (RFC 4119 §2.2.4, RFC 4745 basic policy).
    pub usage_rules: UsageRules,
    /// The geopriv's `<provided-by>` (RFC 7852 §5): additional data by value or reference.
    pub provided_by: Option<ProvidedBy>,
}

/// One WGS 84 position: decimal degrees, altitude in metres (EPSG::4979) when 3D.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Latitude, decimal degrees, −90 to 90.
    pub lat: f64,
    /// Longitude, decimal degrees, −180 to 180.
    pub lon: f64,
    /// Altitude above the WGS 84 ellipsoid, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_m: Option<f64>,
}

/// Confidence of a location (RFC 7459 §5.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    /// Probability that the caller is inside the shape, percent (0 < p ≤ 100); `None` when
    /// the element's value is unreadable.
    pub percent: Option<f64>,
    /// The `pdf` attribute: the probability density function assumed.
    pub pdf: Pdf,
}

/// The `pdf` attribute of `<con:confidence>` (RFC 7459 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdf {
    /// `unknown` (the default).
    Unknown,
    /// `normal`: bivariate/trivariate normal.
    Normal,
    /// `rectangular`: uniform.
    Rectangular,
}

/// The usage rules of a geopriv (RFC 4119 §2.2.4, RFC 4745 §2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRules {
    /// `<retransmission-allowed>` (`yes`/`no`, `true`/`false`), trimmed; `None` when absent
    /// or unreadable (the RFC default is "no").
    pub retransmission_allowed: Option<bool>,
    /// `<retention-expiry>`: an RFC 3339 date-time, as written (trimmed).
    pub retention_expiry: Option<String>,
    /// `<external-ruleset>`: a URI.
    pub ruleset_reference: Option<String>,
    /// `<note-well>`: free text.
    pub note_well: Option<String>,
}

/// The `<provided-by>` element of a geopriv (RFC 7852 §5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProvidedBy {
    /// `<EmergencyCallDataReference purpose=… ref=…>`, in order.
    pub references: Vec<DataReference>,
    /// The blocks of `<EmergencyCallDataValue>` that parsed, in order.
    pub values: Vec<AdditionalData>,
}

macro_rules! civic_address {
    ($($(#[$doc:meta])* $field:ident = $name:literal,)*) => {
        /// A civic address (RFC 5139 §3.1), every CAtype trimmed; serialised with the RFC's
        /// element names (`country`, `A1`, `HNO`…).
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct CivicAddress {
            /// `xml:lang` of the `<civicAddress>` (RFC 5139 §3.3).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub language: Option<String>,
            $(
                $(#[$doc])*
                #[serde(rename = $name, default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<String>,
            )*
            /// Elements of other namespaces (RFC 6848 extensions such as `civicAddr:ext`
            /// `MP`, or private ones), in document order.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub extensions: Vec<CivicExtension>,
        }

        impl CivicAddress {
            /// Set the RFC 5139 element `name`; false if it is not one.
            fn set(&mut self, name: &str, value: String) -> bool {
                match name {
                    $($name => self.$field = Some(value),)*
                    _ => return false,
                }
                true
            }

            /// The RFC 5139 elements that are set, as `(element name, value)`.
            pub fn fields(&self) -> Vec<(&'static str, &str)> {
                let mut out = Vec::new();
                $(if let Some(v) = &self.$field { out.push(($name, v.as_str())); })*
                out
            }
        }
    };
}

civic_address! {
    /// `country`: ISO 3166-1 alpha-2 code.
    country = "country",
    /// `A1`: national subdivision (state, region).
    a1 = "A1",
    /// `A2`: county, parish, district.
    a2 = "A2",
    /// `A3`: city, township.
    a3 = "A3",
    /// `A4`: city division, borough.
    a4 = "A4",
    /// `A5`: neighbourhood, block.
    a5 = "A5",
    /// `A6`: street (RFC 4119; RFC 5139 uses `RD`).
    a6 = "A6",
    /// `PRD`: leading street direction.
    prd = "PRD",
    /// `POD`: trailing street suffix.
    pod = "POD",
    /// `STS`: street suffix.
    sts = "STS",
    /// `HNO`: house number.
    hno = "HNO",
    /// `HNS`: house number suffix.
    hns = "HNS",
    /// `LMK`: landmark or vanity address.
    lmk = "LMK",
    /// `LOC`: additional location information.
    loc = "LOC",
    /// `FLR`: floor.
    flr = "FLR",
    /// `NAM`: name (residence, business).
    nam = "NAM",
    /// `PC`: postal code.
    pc = "PC",
    /// `BLD`: building.
    bld = "BLD",
    /// `UNIT`: unit (apartment, suite).
    unit = "UNIT",
    /// `ROOM`: room.
    room = "ROOM",
    /// `SEAT`: seat (desk, cubicle).
    seat = "SEAT",
    /// `PLC`: place type (RFC 4589).
    plc = "PLC",
    /// `PCN`: postal community name.
    pcn = "PCN",
    /// `POBOX`: post office box.
    pobox = "POBOX",
    /// `ADDCODE`: additional code.
    addcode = "ADDCODE",
    /// `RD`: primary road or street.
    rd = "RD",
    /// `RDSEC`: road section.
    rdsec = "RDSEC",
    /// `RDBR`: road branch.
    rdbr = "RDBR",
    /// `RDSUBBR`: road sub-branch.
    rdsubbr = "RDSUBBR",
    /// `PRM`: road pre-modifier.
    prm = "PRM",
    /// `POM`: road post-modifier.
    pom = "POM",
}

/// A civic address element outside RFC 5139 (RFC 6848 extension), kept as name/value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CivicExtension {
    /// Namespace URI of the element (empty when unqualified).
    pub namespace: String,
    /// Local name (`MP`, `lamp`…).
    pub name: String,
    /// Trimmed text.
    pub value: String,
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
    /// `gml:Polygon` (RFC 5491 §5.2.2): the exterior ring's vertices as written (the last
    /// equal to the first), at least 4.
    Polygon {
        /// Vertices, WGS 84.
        vertices: Vec<Position>,
    },
    /// `gs:Ellipse` (RFC 5491 §5.2.4).
    Ellipse {
        /// Centre.
        centre: Position,
        /// Semi-major axis, metres.
        semi_major_m: f64,
        /// Semi-minor axis, metres.
        semi_minor_m: f64,
        /// Orientation of the semi-major axis, degrees clockwise from true north.
        orientation_deg: f64,
    },
    /// `gs:ArcBand` (RFC 5491 §5.2.5).
    ArcBand {
        /// Centre.
        centre: Position,
        /// Inner radius, metres.
        inner_radius_m: f64,
        /// Outer radius, metres.
        outer_radius_m: f64,
        /// Start angle, degrees clockwise from true north.
        start_angle_deg: f64,
        /// Opening angle, degrees.
        opening_angle_deg: f64,
    },
    /// `gs:Sphere` (RFC 5491 §5.2.6, 3D).
    Sphere {
        /// Centre (with altitude).
        centre: Position,
        /// Radius, metres.
        radius_m: f64,
    },
    /// `gs:Ellipsoid` (RFC 5491 §5.2.7, 3D).
    Ellipsoid {
        /// Centre (with altitude).
        centre: Position,
        /// Semi-major axis, metres.
        semi_major_m: f64,
        /// Semi-minor axis, metres.
        semi_minor_m: f64,
        /// Vertical axis, metres.
        vertical_m: f64,
        /// Orientation of the semi-major axis, degrees clockwise from true north.
        orientation_deg: f64,
    },
    /// `gs:Prism` (RFC 5491 §5.2.8, 3D): a polygon base extruded upwards.
    Prism {
        /// The base polygon's vertices (with altitude).
        base: Vec<Position>,
        /// Height, metres.
        height_m: f64,
    },
    /// A civic address (RFC 5139, RFC 4119 §2.2.1).
    Civic(Box<CivicAddress>),
    /// A GML feature that is not an RFC 5491 shape, by its local name (`LineString`…).
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
    /// The kind of document the location came in.
    pub origin: Origin,
}

/// The kind of document a [`Location`] came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A PIDF-LO document (SIP body, by value).
    PidfLo,
    /// An AML SMS (ETSI TS 103 625 §7); [`Source::element`] is then `Device`.
    AmlSms,
    /// An AML HTTPS POST (ETSI TS 103 625 §8); [`Source::element`] is then `Device`.
    AmlHttps,
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
    /// A `gml:Polygon` (or a Prism base) whose ring does not have 4 to 1000 positions.
    #[error("polygon with {vertices} positions (a ring needs 4 to 1000)")]
    InvalidPolygon {
        /// Positions found.
        vertices: usize,
    },
    /// An angle (orientation, start or opening angle) that is not a finite number.
    #[error("invalid angle {text:?}")]
    InvalidAngle {
        /// The angle text received.
        text: String,
    },
    /// An RFC 7852 block whose root is not a known `EmergencyCallData.*` element.
    #[error("not an additional data block: root element <{root}>")]
    NotAdditionalData {
        /// Local name of the root element found.
        root: String,
    },
    /// An AML message (ETSI TS 103 625) that is not one: no `A"ML=` header, or a form body
    /// without `v=`.
    #[error("not an AML message")]
    NotAml,
    /// An AML message without a mandatory field (`lt`, `lg`, `ml`…).
    #[error("AML message without its {field} field (truncated?)")]
    AmlMissingField {
        /// The field's name as in TS 103 625 (`lt`, `location_latitude`…).
        field: &'static str,
    },
    /// An AML field whose value cannot be read.
    #[error("AML field {field} has an invalid value {value:?}")]
    AmlInvalidField {
        /// The field's name.
        field: &'static str,
        /// The value received (at most 64 characters).
        value: String,
    },
    /// An AML SMS whose `ml` (message length) is not its real length: corrupt or truncated
    /// (TS 103 625 §7.5.2).
    #[error("AML message length {declared} declared, {actual} received")]
    AmlLengthMismatch {
        /// The `ml` value, characters.
        declared: usize,
        /// The message's real length, characters.
        actual: usize,
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

/// The `Geolocation-Routing` header value (RFC 6442 §4.2): `yes` → `Some(true)` (the
/// location may be used to route the call), `no` → `Some(false)`; anything else (a future
/// value, garbage) → `None`, which RFC 6442 §4.2 says to read like an absent header, i.e.
/// "no" for intermediaries.
pub fn geolocation_routing(value: &str) -> Option<bool> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("yes") => Some(true),
        v if v.eq_ignore_ascii_case("no") => Some(false),
        _ => None,
    }
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
    fn geolocation_routing_values() {
        assert_eq!(geolocation_routing(" Yes "), Some(true));
        assert_eq!(geolocation_routing("no"), Some(false));
        assert_eq!(geolocation_routing("maybe"), None);
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
