//! The hand-off document (DESIGN §4), version 1: one JSON object per event of a call, in the
//! spirit of NENA's EIDO (call, location and agent components). Every key is always present
//! (`null` when unknown) except the shape-specific ones of [`Geometry`]; times are RFC 3339
//! UTC, coordinates WGS 84 decimal degrees, lengths metres, angles degrees, durations
//! seconds. The schema is `deploy/handoff.schema.json`; a consumer deduplicates on
//! [`HandoffDocument::idempotency_key`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::location::additional_data::{
    Comment, DeviceInfo, EntryContent, ProviderInfo, ServiceInfo, SubscriberInfo,
};
use crate::location::{
    AdditionalData, AdditionalDataEntry, CivicAddress, Location, Origin, Pdf, Position,
    PresenceElement, Shape,
};

/// The document format's version: bumped on any change that is not a pure addition.
pub const VERSION: u32 = 1;

/// One hand-off document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffDocument {
    /// Always [`VERSION`].
    pub version: u32,
    /// `"{call id}:{sequence}"`: unique per document, stable across redeliveries.
    pub idempotency_key: String,
    /// The document's rank among this call's documents, from 1.
    pub sequence: u32,
    /// What happened.
    pub event: HandoffEvent,
    /// When the document was built (RFC 3339 UTC).
    pub generated_at: DateTime<Utc>,
    /// The call component.
    pub call: CallPart,
    /// The call's milestones.
    pub times: Times,
    /// The queue the call waited in, once queued.
    pub queue: Option<QueuePart>,
    /// The agent seat, once offered/answered.
    pub agent: Option<AgentPart>,
    /// Every location received so far, oldest first (updates are appended, never replaced).
    pub locations: Vec<LocationPart>,
    /// RFC 7852 additional data, in header order.
    pub additional_data: Vec<AdditionalDataPart>,
    /// The dialplan route that took the call (DESIGN §5); `null` before routing.
    pub route: Option<String>,
    /// Call variables set by the route's `set` steps (name → value).
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
    /// Free labels from the dialplan (`priority`, `language:fr`…).
    pub tags: Vec<String>,
    /// How the call ended (with the `ended` event).
    pub outcome: Option<Outcome>,
}

/// The event that produced a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HandoffEvent {
    /// The call arrived (with its first locations).
    Received,
    /// An agent answered.
    Answered,
    /// A location arrived mid-call (re-INVITE, UPDATE, AML).
    LocationUpdate,
    /// The call ended.
    Ended,
}

impl HandoffEvent {
    /// The event's name as serialised in the document (`received`, `answered`,
    /// `location_update`, `ended`).
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffEvent::Received => "received",
            HandoffEvent::Answered => "answered",
            HandoffEvent::LocationUpdate => "location_update",
            HandoffEvent::Ended => "ended",
        }
    }
}

/// The call component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallPart {
    /// vigie's call id (a ULID).
    pub id: String,
    /// The inbound leg's SIP Call-ID (RFC 3261 §8.1.1.4).
    pub sip_call_id: String,
    /// The caller (P-Asserted-Identity, else From).
    pub caller: Party,
    /// The called number (Request-URI user part or URN, e.g. `19`, `urn:service:sos`).
    pub called_number: String,
}

/// A caller's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// The number or URI user part; `null` when withheld or absent.
    pub number: Option<String>,
    /// The display name, if any.
    pub display: Option<String>,
}

/// The call's milestones, RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Times {
    /// The INVITE arrived.
    pub received: DateTime<Utc>,
    /// The call entered a queue.
    pub queued: Option<DateTime<Utc>>,
    /// An agent answered.
    pub answered: Option<DateTime<Utc>>,
    /// The call ended.
    pub ended: Option<DateTime<Utc>>,
}

/// The queue component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuePart {
    /// Queue name.
    pub name: String,
    /// Time waited in queue until answer or end, seconds; `null` while waiting.
    pub wait_seconds: Option<f64>,
}

/// The agent component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPart {
    /// The agent seat's name.
    pub seat: String,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// An agent answered.
    Answered,
    /// The caller hung up before an agent answered (on the callback list).
    Abandoned,
    /// The call left along the overflow chain.
    Overflowed,
    /// The call failed (vigie or network fault).
    Failed,
}

/// Kind of a location's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ShapeKind {
    /// RFC 5491 Point.
    Point,
    /// RFC 5491 Circle.
    Circle,
    /// RFC 5491 Ellipse.
    Ellipse,
    /// RFC 5491 ArcBand.
    ArcBand,
    /// RFC 5491 Polygon.
    Polygon,
    /// RFC 5491 Sphere.
    Sphere,
    /// RFC 5491 Ellipsoid.
    Ellipsoid,
    /// RFC 5491 Prism.
    Prism,
    /// Civic address only.
    Civic,
    /// A location by reference (URI to dereference).
    Reference,
    /// Another GML feature.
    Other,
}

/// One location in the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationPart {
    /// The shape.
    pub shape: ShapeKind,
    /// Latitude of the centre (polygons: vertex centroid), WGS 84 degrees.
    pub lat: Option<f64>,
    /// Longitude of the centre, WGS 84 degrees.
    pub lon: Option<f64>,
    /// Altitude of the centre, metres.
    pub alt_m: Option<f64>,
    /// Horizontal uncertainty: radius around (`lat`, `lon`) holding the whole shape, metres
    /// (circle/sphere radius, ellipse semi-major axis, arc band outer radius, polygon's
    /// farthest vertex); `null` for a point or civic address.
    pub radius_m: Option<f64>,
    /// Shape-specific values.
    pub geometry: Geometry,
    /// Confidence, percent (RFC 7459).
    pub confidence_percent: Option<f64>,
    /// Confidence's probability density function: `normal`, `rectangular`, `unknown`.
    pub confidence_pdf: Option<String>,
    /// Positioning method (`GPS`, `Cell`, `Wi-Fi`…).
    pub method: Option<String>,
    /// Where the location came from.
    pub source: LocationSource,
    /// The location's own time (RFC 3339, as sent).
    pub timestamp: Option<String>,
    /// Civic address fields (RFC 5139 names).
    pub civic: Option<CivicAddress>,
    /// The location URI for a location by reference.
    pub reference: Option<String>,
    /// Usage rule: may the location be passed on (RFC 4119).
    pub retransmission_allowed: Option<bool>,
    /// Usage rule: keep until (RFC 3339, as sent).
    pub retention_expiry: Option<String>,
}

/// Shape-specific values of a [`LocationPart`]; absent keys do not apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    /// Ellipse/Ellipsoid semi-major axis, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_major_m: Option<f64>,
    /// Ellipse/Ellipsoid semi-minor axis, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_minor_m: Option<f64>,
    /// Ellipsoid vertical axis, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical_m: Option<f64>,
    /// Ellipse/Ellipsoid orientation, degrees from north.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation_deg: Option<f64>,
    /// ArcBand inner radius, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_radius_m: Option<f64>,
    /// ArcBand outer radius, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_radius_m: Option<f64>,
    /// ArcBand start angle, degrees from north.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_angle_deg: Option<f64>,
    /// ArcBand opening angle, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opening_angle_deg: Option<f64>,
    /// Prism height, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height_m: Option<f64>,
    /// Polygon / Prism base vertices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vertices: Vec<Position>,
}

/// Where a [`LocationPart`] came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSource {
    /// `pidf_lo`, `aml_sms`, `aml_https` or `reference`.
    pub kind: String,
    /// The presence element: `tuple`, `device`, `person`.
    pub element: Option<String>,
    /// Its `id`.
    pub id: Option<String>,
    /// The SIP body part's Content-ID.
    pub content_id: Option<String>,
}

/// One RFC 7852 additional data entry in the document: exactly one of `reference` or a
/// block is set (or neither, for a by-value block vigie does not decode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdditionalDataPart {
    /// The purpose without `EmergencyCallData.` (`ProviderInfo`…).
    pub purpose: String,
    /// The URI to dereference, for data by reference.
    pub reference: Option<String>,
    /// ProviderInfo block.
    pub provider_info: Option<ProviderInfo>,
    /// ServiceInfo block.
    pub service_info: Option<ServiceInfo>,
    /// DeviceInfo block.
    pub device_info: Option<DeviceInfo>,
    /// SubscriberInfo block.
    pub subscriber_info: Option<SubscriberInfo>,
    /// Comment block.
    pub comment: Option<Comment>,
}

/// `"{call id}:{sequence}"`.
pub fn idempotency_key(call_id: &str, sequence: u32) -> String {
    format!("{call_id}:{sequence}")
}

impl HandoffDocument {
    /// A document for `event`, with no queue, agent, location, data, tag or outcome yet.
    pub fn new(
        call: CallPart,
        received: DateTime<Utc>,
        sequence: u32,
        event: HandoffEvent,
        generated_at: DateTime<Utc>,
    ) -> Self {
        HandoffDocument {
            version: VERSION,
            idempotency_key: idempotency_key(&call.id, sequence),
            sequence,
            event,
            generated_at,
            call,
            times: Times {
                received,
                queued: None,
                answered: None,
                ended: None,
            },
            queue: None,
            agent: None,
            locations: Vec::new(),
            additional_data: Vec::new(),
            route: None,
            vars: std::collections::BTreeMap::new(),
            tags: Vec::new(),
            outcome: None,
        }
    }

    /// The document as JSON.
    ///
    /// # Errors
    /// Only a serde_json failure (never with these types: every map key is a string).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        // A typical document is 0.6-1.5 KiB: one allocation instead of a doubling series.
        let mut buf = Vec::with_capacity(2048);
        serde_json::to_writer(&mut buf, self)?;
        // serde_json writes UTF-8 only.
        String::from_utf8(buf).map_err(|e| serde::ser::Error::custom(e.utf8_error()))
    }
}

impl LocationPart {
    /// A location by reference (`Geolocation: <https://…>`, RFC 6442 §4.1).
    pub fn reference(uri: &str) -> Self {
        LocationPart {
            shape: ShapeKind::Reference,
            lat: None,
            lon: None,
            alt_m: None,
            radius_m: None,
            geometry: Geometry::default(),
            confidence_percent: None,
            confidence_pdf: None,
            method: None,
            source: LocationSource {
                kind: "reference".to_owned(),
                element: None,
                id: None,
                content_id: None,
            },
            timestamp: None,
            civic: None,
            reference: Some(uri.to_owned()),
            retransmission_allowed: None,
            retention_expiry: None,
        }
    }
}

impl From<&Location> for LocationPart {
    fn from(l: &Location) -> Self {
        let mut geometry = Geometry::default();
        let mut civic = None;
        let centre = |p: &Position| (Some(p.lat), Some(p.lon), p.alt_m);
        let (shape, (lat, lon, alt_m), radius_m) = match &l.shape {
            Shape::Point { lat, lon, alt_m } => {
                (ShapeKind::Point, (Some(*lat), Some(*lon), *alt_m), None)
            }
            Shape::Circle { lat, lon, radius_m } => (
                ShapeKind::Circle,
                (Some(*lat), Some(*lon), None),
                Some(*radius_m),
            ),
            Shape::Ellipse {
                centre: c,
                semi_major_m,
                semi_minor_m,
                orientation_deg,
            } => {
                geometry.semi_major_m = Some(*semi_major_m);
                geometry.semi_minor_m = Some(*semi_minor_m);
                geometry.orientation_deg = Some(*orientation_deg);
                (
                    ShapeKind::Ellipse,
                    centre(c),
                    Some(semi_major_m.max(*semi_minor_m)),
                )
            }
            Shape::ArcBand {
                centre: c,
                inner_radius_m,
                outer_radius_m,
                start_angle_deg,
                opening_angle_deg,
            } => {
                geometry.inner_radius_m = Some(*inner_radius_m);
                geometry.outer_radius_m = Some(*outer_radius_m);
                geometry.start_angle_deg = Some(*start_angle_deg);
                geometry.opening_angle_deg = Some(*opening_angle_deg);
                (ShapeKind::ArcBand, centre(c), Some(*outer_radius_m))
            }
            Shape::Polygon { vertices } => {
                geometry.vertices = vertices.clone();
                let (c, r) = enclosing(vertices);
                (ShapeKind::Polygon, c, r)
            }
            Shape::Sphere {
                centre: c,
                radius_m,
            } => (ShapeKind::Sphere, centre(c), Some(*radius_m)),
            Shape::Ellipsoid {
                centre: c,
                semi_major_m,
                semi_minor_m,
                vertical_m,
                orientation_deg,
            } => {
                geometry.semi_major_m = Some(*semi_major_m);
                geometry.semi_minor_m = Some(*semi_minor_m);
                geometry.vertical_m = Some(*vertical_m);
                geometry.orientation_deg = Some(*orientation_deg);
                (
                    ShapeKind::Ellipsoid,
                    centre(c),
                    Some(semi_major_m.max(*semi_minor_m)),
                )
            }
            Shape::Prism { base, height_m } => {
                geometry.vertices = base.clone();
                geometry.height_m = Some(*height_m);
                let (c, r) = enclosing(base);
                (ShapeKind::Prism, c, r)
            }
            Shape::Civic(address) => {
                civic = Some((**address).clone());
                (ShapeKind::Civic, (None, None, None), None)
            }
            _ => (ShapeKind::Other, (None, None, None), None),
        };
        LocationPart {
            shape,
            lat,
            lon,
            alt_m,
            radius_m,
            geometry,
            confidence_percent: l.confidence.and_then(|c| c.percent),
            confidence_pdf: l.confidence.map(|c| {
                match c.pdf {
                    Pdf::Normal => "normal",
                    Pdf::Rectangular => "rectangular",
                    Pdf::Unknown => "unknown",
                }
                .to_owned()
            }),
            method: l.method.clone(),
            source: LocationSource {
                kind: match l.source.origin {
                    Origin::PidfLo => "pidf_lo",
                    Origin::AmlSms => "aml_sms",
                    Origin::AmlHttps => "aml_https",
                }
                .to_owned(),
                element: Some(
                    match l.source.element {
                        PresenceElement::Tuple => "tuple",
                        PresenceElement::Device => "device",
                        PresenceElement::Person => "person",
                    }
                    .to_owned(),
                ),
                id: l.source.id.clone(),
                content_id: l.source.content_id.clone(),
            },
            timestamp: l.timestamp.clone(),
            civic,
            reference: None,
            retransmission_allowed: l.usage_rules.retransmission_allowed,
            retention_expiry: l.usage_rules.retention_expiry.clone(),
        }
    }
}

/// Centroid of the distinct vertices (the closing repeat dropped) and the distance to the
/// farthest vertex, metres (haversine on a 6 371 008.8 m sphere: enough for an uncertainty).
type Centre = (Option<f64>, Option<f64>, Option<f64>);
fn enclosing(vertices: &[Position]) -> (Centre, Option<f64>) {
    let distinct = match vertices {
        // The pattern guarantees at least 2 vertices, so `len - 1` is in range.
        [first, .., last] if first == last => &vertices[..vertices.len() - 1],
        _ => vertices,
    };
    if distinct.is_empty() {
        return ((None, None, None), None);
    }
    let n = distinct.len() as f64;
    let lat = distinct.iter().map(|p| p.lat).sum::<f64>() / n;
    let lon = distinct.iter().map(|p| p.lon).sum::<f64>() / n;
    let alts: Vec<f64> = distinct.iter().filter_map(|p| p.alt_m).collect();
    let alt = (!alts.is_empty()).then(|| alts.iter().sum::<f64>() / alts.len() as f64);
    let radius = distinct
        .iter()
        .map(|p| haversine_m(lat, lon, p.lat, p.lon))
        .fold(0.0, f64::max);
    ((Some(lat), Some(lon), alt), Some(radius))
}

/// Great-circle distance in metres between two WGS 84 points (degrees).
fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const R: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().min(1.0).asin()
}

impl From<&AdditionalData> for AdditionalDataPart {
    fn from(data: &AdditionalData) -> Self {
        let mut part = AdditionalDataPart::empty(data.purpose());
        match data {
            AdditionalData::ProviderInfo(p) => part.provider_info = Some(p.clone()),
            AdditionalData::ServiceInfo(s) => part.service_info = Some(s.clone()),
            AdditionalData::DeviceInfo(d) => part.device_info = Some(d.clone()),
            AdditionalData::SubscriberInfo(s) => part.subscriber_info = Some(s.clone()),
            AdditionalData::Comment(c) => part.comment = Some(c.clone()),
            // eCall control blocks are for the media/eCall layer, not for dispatch.
            AdditionalData::Control(_) => {}
        }
        part
    }
}

impl From<&AdditionalDataEntry> for AdditionalDataPart {
    fn from(entry: &AdditionalDataEntry) -> Self {
        match &entry.content {
            EntryContent::Value(data) => {
                let mut part = AdditionalDataPart::from(&**data);
                part.purpose.clone_from(&entry.purpose);
                part
            }
            EntryContent::Reference => AdditionalDataPart {
                reference: Some(entry.uri.clone()),
                ..AdditionalDataPart::empty(&entry.purpose)
            },
            _ => AdditionalDataPart::empty(&entry.purpose),
        }
    }
}

impl AdditionalDataPart {
    fn empty(purpose: &str) -> Self {
        AdditionalDataPart {
            purpose: purpose.to_owned(),
            reference: None,
            provider_info: None,
            service_info: None,
            device_info: None,
            subscriber_info: None,
            comment: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_centre_and_radius() {
        let p = |lat, lon| Position {
            lat,
            lon,
            alt_m: None,
        };
        // A square of ±0.001° around (0, 0), closed.
        let v = [
            p(0.001, 0.001),
            p(0.001, -0.001),
            p(-0.001, -0.001),
            p(-0.001, 0.001),
            p(0.001, 0.001),
        ];
        let ((lat, lon, alt), r) = enclosing(&v);
        assert!(lat.unwrap().abs() < 1e-12 && lon.unwrap().abs() < 1e-12);
        assert_eq!(alt, None);
        // Half-diagonal: 0.001·√2 degrees ≈ 157.25 m.
        let r = r.unwrap();
        assert!((r - 157.25).abs() < 0.1, "{r}");
    }

    #[test]
    fn key_and_json_shape() {
        let call = CallPart {
            id: "01J".into(),
            sip_call_id: "a@b".into(),
            caller: Party {
                number: None,
                display: None,
            },
            called_number: "19".into(),
        };
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let d = HandoffDocument::new(call, t, 3, HandoffEvent::LocationUpdate, t);
        assert_eq!(d.idempotency_key, "01J:3");
        let v: serde_json::Value = serde_json::from_str(&d.to_json().unwrap()).unwrap();
        assert_eq!(v["event"], "location_update");
        assert_eq!(v["times"]["received"], "2023-11-14T22:13:20Z");
        assert!(v["queue"].is_null());
        // The outbox's `event` column (`as_str`) is the document's `event` name.
        for e in [
            HandoffEvent::Received,
            HandoffEvent::Answered,
            HandoffEvent::LocationUpdate,
            HandoffEvent::Ended,
        ] {
            assert_eq!(serde_json::to_value(e).ok(), Some(e.as_str().into()));
        }
    }
}
