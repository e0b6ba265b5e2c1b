//! PIDF-LO (RFC 4119, RFC 5491, RFC 5139, RFC 7459): geodetic shapes in GML 3.1.1 and the
//! RFC 5491 shapes namespace, civic addresses, usage rules, confidence and `provided-by`
//! (RFC 7852 §5), read with quick-xml into a small element tree. Namespaces are matched by
//! URI, never by prefix.

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::additional_data::{self, DataReference};
use super::{
    CivicAddress, Confidence, Location, LocationError, Origin, Pdf, Position, PresenceElement,
    ProvidedBy, Shape, Source, UsageRules,
};

const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
const NS_DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
const NS_GEOPRIV: &str = "urn:ietf:params:xml:ns:pidf:geopriv10";
const NS_BASIC_POLICY: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy";
const NS_CIVIC: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr";
/// The civic namespace of RFC 4119's examples (before RFC 5139).
const NS_CIVIC_LEGACY: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc";
const NS_GML: &str = "http://www.opengis.net/gml";
/// The GML namespace of the RFC 4119 examples.
const NS_GML_LEGACY: &str = "urn:opengis:specification:gml:schema-xsd:feature:v3.0";
const NS_PIDFLO: &str = "http://www.opengis.net/pidflo/1.0";
const NS_CONFIDENCE: &str = "urn:ietf:params:xml:ns:geopriv:conf";
const NS_ECD: &str = "urn:ietf:params:xml:ns:EmergencyCallData";
/// Unit of measure "metre" (RFC 5491 §5.1).
const UOM_METRE: &str = "urn:ogc:def:uom:EPSG::9001";
/// Unit of measure "degree" (RFC 5491 §5.1).
const UOM_DEGREE: &str = "urn:ogc:def:uom:EPSG::9102";
/// Unit of measure "radian" (EPSG::9101), converted to degrees.
const UOM_RADIAN: &str = "urn:ogc:def:uom:EPSG::9101";

/// Deepest element nesting accepted; PIDF-LO documents are shallow.
const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
const MAX_ELEMENTS: usize = 20_000;
/// Most vertices accepted in one polygon.
const MAX_VERTICES: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ns {
    Pidf,
    DataModel,
    Geopriv,
    BasicPolicy,
    Civic,
    Gml,
    PidfLo,
    Confidence,
    Ecd,
    Other,
}

impl Ns {
    fn from_uri(uri: &str) -> Self {
        match uri {
            NS_PIDF => Ns::Pidf,
            NS_DATA_MODEL => Ns::DataModel,
            NS_GEOPRIV => Ns::Geopriv,
            NS_BASIC_POLICY => Ns::BasicPolicy,
            NS_CIVIC | NS_CIVIC_LEGACY => Ns::Civic,
            NS_GML | NS_GML_LEGACY => Ns::Gml,
            NS_PIDFLO => Ns::PidfLo,
            NS_CONFIDENCE => Ns::Confidence,
            NS_ECD => Ns::Ecd,
            _ => Ns::Other,
        }
    }
}

/// One XML element with its namespace resolved (shared with the RFC 7852 block parser).
#[derive(Debug)]
pub(super) struct Element {
    pub(super) ns: Ns,
    /// The namespace URI, empty when unbound.
    pub(super) uri: String,
    pub(super) local: String,
    /// Attributes by local name (prefixes dropped: `gml:id` is `id`).
    pub(super) attributes: Vec<(String, String)>,
    pub(super) children: Vec<Element>,
    pub(super) text: String,
}

impl Element {
    pub(super) fn is(&self, ns: &[Ns], local: &str) -> bool {
        self.local == local && ns.contains(&self.ns)
    }

    pub(super) fn child(&self, ns: &[Ns], local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// First child with this local name in the namespace `uri`.
    pub(super) fn child_in(&self, uri: &str, local: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.local == local && c.uri == uri)
    }

    pub(super) fn attribute(&self, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(name, _)| name == local)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn trimmed_text(&self) -> Option<String> {
        let t = self.text.trim();
        (!t.is_empty()).then(|| t.to_owned())
    }

    /// First descendant (depth first) with this local name, any namespace.
    pub(super) fn descendant(&self, local: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.local == local {
                Some(c)
            } else {
                c.descendant(local)
            }
        })
    }
}

/// Parse a PIDF-LO document into its locations, in document order.
///
/// Every `<tuple>` (RFC 3863), `<dm:device>` and `<dm:person>` (RFC 4479) of the `<presence>`
/// root is searched for `<gp:geopriv>` (RFC 4119 §2.2) elements; each shape or civic address
/// in a `<gp:location-info>` gives one [`Location`] carrying the geopriv's `<method>`, usage
/// rules (RFC 4119 §2.2.4, RFC 4745 basic policy), `provided-by` (RFC 7852 §5), the
/// location-info's `<con:confidence>` (RFC 7459 §5) and the element's `<timestamp>`.
///
/// Shapes (RFC 5491 §5.2): Point (2D EPSG::4326 and 3D EPSG::4979), Polygon (`gml:pos` or
/// `gml:posList`), Circle, Ellipse, ArcBand, Sphere, Ellipsoid, Prism; in the current GML
/// namespace or the RFC 4119 one (where `gml:coordinates` may be decimal or D:M:S with a
/// hemisphere letter). Lengths are metres (`EPSG::9001`; a missing `uom` is taken as
/// metres), angles degrees (`EPSG::9102`; radians `EPSG::9101` converted). A shape in the
/// wrong one of the GML / pidflo namespaces is tolerated. Civic addresses (RFC 5139, RFC 4119
/// `civicLoc`) give [`Shape::Civic`] with RFC 6848 extensions kept. Other GML features give
/// [`Shape::Other`]. A document with no shape (e.g. only RFC 5962 dynamic data) gives an empty
/// list.
///
/// The `content_id` of every returned [`Source`] is `None`.
///
/// # Errors
/// [`LocationError::NotUtf8`], [`LocationError::Xml`] and [`LocationError::UnexpectedEof`]
/// for a document that is not well-formed (e.g. truncated), [`LocationError::TooComplex`],
/// [`LocationError::NotPidf`] if the root is not a PIDF `<presence>`, and the shape errors
/// ([`LocationError::InvalidPosition`], [`LocationError::OutOfRange`],
/// [`LocationError::InvalidRadius`], [`LocationError::UnsupportedUom`],
/// [`LocationError::UnsupportedCrs`], [`LocationError::MissingElement`]).
pub fn parse_pidf(xml: &[u8]) -> Result<Vec<Location>, LocationError> {
    let root = parse_tree(xml)?;
    if !root.is(&[Ns::Pidf], "presence") {
        return Err(LocationError::NotPidf { root: root.local });
    }
    let mut locations = Vec::new();
    for child in &root.children {
        let element = if child.is(&[Ns::Pidf], "tuple") {
            PresenceElement::Tuple
        } else if child.is(&[Ns::DataModel], "device") {
            PresenceElement::Device
        } else if child.is(&[Ns::DataModel], "person") {
            PresenceElement::Person
        } else {
            continue;
        };
        let source = Source {
            element,
            id: child.attribute("id").map(str::to_owned),
            content_id: None,
            origin: Origin::PidfLo,
        };
        let timestamp = child
            .child(&[Ns::Pidf, Ns::DataModel], "timestamp")
            .and_then(Element::trimmed_text);
        let mut geoprivs = Vec::new();
        find_all(child, Ns::Geopriv, "geopriv", &mut geoprivs);
        for geopriv in geoprivs {
            // <method> belongs in the geopriv namespace; some devices put it in pidf's.
            let method = geopriv
                .child(&[Ns::Geopriv, Ns::Pidf], "method")
                .and_then(Element::trimmed_text);
            let usage_rules = geopriv
                .child(&[Ns::Geopriv], "usage-rules")
                .map(usage_rules)
                .unwrap_or_default();
            let provided_by = geopriv.child(&[Ns::Ecd], "provided-by").map(provided_by);
            for info in geopriv
                .children
                .iter()
                .filter(|c| c.is(&[Ns::Geopriv], "location-info"))
            {
                let confidence = info.child(&[Ns::Confidence], "confidence").map(confidence);
                let mut shapes = Vec::new();
                for candidate in &info.children {
                    collect_shapes(candidate, &mut shapes)?;
                }
                locations.extend(shapes.into_iter().map(|shape| Location {
                    shape,
                    method: method.clone(),
                    timestamp: timestamp.clone(),
                    source: source.clone(),
                    confidence,
                    usage_rules: usage_rules.clone(),
                    provided_by: provided_by.clone(),
                }));
            }
        }
    }
    Ok(locations)
}

fn find_all<'a>(element: &'a Element, ns: Ns, local: &str, out: &mut Vec<&'a Element>) {
    for child in &element.children {
        if child.is(&[ns], local) {
            out.push(child);
        } else {
            find_all(child, ns, local, out);
        }
    }
}

/// `<gp:usage-rules>`: RFC 4119 §2.2.4 put the rules in the geopriv namespace, RFC 4745
/// (basic policy) in `geopriv10:basicPolicy`; both are read.
fn usage_rules(rules: &Element) -> UsageRules {
    let ns = [Ns::BasicPolicy, Ns::Geopriv];
    let text = |name| rules.child(&ns, name).and_then(Element::trimmed_text);
    UsageRules {
        retransmission_allowed: text("retransmission-allowed").and_then(|v| {
            match v.to_ascii_lowercase().as_str() {
                "yes" | "true" | "1" => Some(true),
                "no" | "false" | "0" => Some(false),
                _ => None,
            }
        }),
        retention_expiry: text("retention-expiry"),
        ruleset_reference: text("external-ruleset"),
        note_well: text("note-well"),
    }
}

/// `<con:confidence pdf="…">95</con:confidence>` (RFC 7459 §5.1); an unreadable value is
/// ignored rather than failing the location.
fn confidence(element: &Element) -> Confidence {
    let percent = element
        .trimmed_text()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p > 0.0 && *p <= 100.0);
    let pdf = match element.attribute("pdf").map(str::trim) {
        Some("normal") => Pdf::Normal,
        Some("rectangular") => Pdf::Rectangular,
        _ => Pdf::Unknown,
    };
    Confidence { percent, pdf }
}

/// `<provided-by>` of RFC 7852 §5: references and values of additional data blocks.
fn provided_by(element: &Element) -> ProvidedBy {
    let mut out = ProvidedBy::default();
    for child in &element.children {
        if child.is(&[Ns::Ecd], "EmergencyCallDataReference") {
            out.references.push(DataReference {
                purpose: child
                    .attribute("purpose")
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                uri: child.attribute("ref").unwrap_or_default().trim().to_owned(),
            });
        } else if child.is(&[Ns::Ecd], "EmergencyCallDataValue") {
            out.values.extend(
                child
                    .children
                    .iter()
                    .filter_map(|block| additional_data::block(block).ok()),
            );
        }
    }
    out
}

fn collect_shapes(element: &Element, out: &mut Vec<Shape>) -> Result<(), LocationError> {
    match (element.ns, element.local.as_str()) {
        // RFC 4119 §2.2.2 wraps the feature in <gml:location>.
        (Ns::Gml, "location") => {
            for child in &element.children {
                collect_shapes(child, out)?;
            }
        }
        (Ns::Gml | Ns::PidfLo, "Point") => out.push(point(element)?),
        (Ns::PidfLo | Ns::Gml, "Circle") => out.push(circle(element)?),
        (Ns::Gml | Ns::PidfLo, "Polygon") => {
            let dim = dimension(element, 2)?;
            out.push(Shape::Polygon {
                vertices: polygon(element, dim)?,
            });
        }
        (Ns::PidfLo | Ns::Gml, "Ellipse") => out.push(ellipse(element)?),
        (Ns::PidfLo | Ns::Gml, "ArcBand") => out.push(arc_band(element)?),
        (Ns::PidfLo | Ns::Gml, "Sphere") => out.push(sphere(element)?),
        (Ns::PidfLo | Ns::Gml, "Ellipsoid") => out.push(ellipsoid(element)?),
        (Ns::PidfLo | Ns::Gml, "Prism") => out.push(prism(element)?),
        (Ns::Gml | Ns::PidfLo, other) => out.push(Shape::Other(other.to_owned())),
        (Ns::Civic, "civicAddress") => out.push(Shape::Civic(Box::new(civic(element)))),
        // Confidence (RFC 7459), dynamic data (RFC 5962), extensions: not shapes.
        _ => {}
    }
    Ok(())
}

fn point(element: &Element) -> Result<Shape, LocationError> {
    dimension(element, 2)?;
    let p = centre(element, "Point")?;
    Ok(Shape::Point {
        lat: p.lat,
        lon: p.lon,
        alt_m: p.alt_m,
    })
}

fn circle(element: &Element) -> Result<Shape, LocationError> {
    dimension(element, 2)?;
    let p = centre(element, "Circle")?;
    let radius_m = length(element, "Circle", "radius")?;
    Ok(Shape::Circle {
        lat: p.lat,
        lon: p.lon,
        radius_m,
    })
}

fn ellipse(element: &Element) -> Result<Shape, LocationError> {
    dimension(element, 2)?;
    Ok(Shape::Ellipse {
        centre: centre(element, "Ellipse")?,
        semi_major_m: length(element, "Ellipse", "semiMajorAxis")?,
        semi_minor_m: length(element, "Ellipse", "semiMinorAxis")?,
        orientation_deg: angle(element, "Ellipse", "orientation")?,
    })
}

fn arc_band(element: &Element) -> Result<Shape, LocationError> {
    dimension(element, 2)?;
    Ok(Shape::ArcBand {
        centre: centre(element, "ArcBand")?,
        inner_radius_m: length(element, "ArcBand", "innerRadius")?,
        outer_radius_m: length(element, "ArcBand", "outerRadius")?,
        start_angle_deg: angle(element, "ArcBand", "startAngle")?,
        opening_angle_deg: angle(element, "ArcBand", "openingAngle")?,
    })
}

fn sphere(element: &Element) -> Result<Shape, LocationError> {
    dimension(element, 3)?;
    Ok(Shape::Sphere {
        centre: centre(element, "Sphere")?,
        radius_m: length(element, "Sphere", "radius")?,
    })
}

fn ellipsoid(element: &Element) -> Result<Shape, LocationError> {
    dimension(element, 3)?;
    Ok(Shape::Ellipsoid {
        centre: centre(element, "Ellipsoid")?,
        semi_major_m: length(element, "Ellipsoid", "semiMajorAxis")?,
        semi_minor_m: length(element, "Ellipsoid", "semiMinorAxis")?,
        vertical_m: length(element, "Ellipsoid", "verticalAxis")?,
        orientation_deg: angle(element, "Ellipsoid", "orientation")?,
    })
}

fn prism(element: &Element) -> Result<Shape, LocationError> {
    let dim = dimension(element, 3)?;
    let base = element
        .child(&[Ns::PidfLo, Ns::Gml], "base")
        .and_then(|b| b.child(&[Ns::Gml, Ns::PidfLo], "Polygon"))
        .ok_or(LocationError::MissingElement {
            shape: "Prism",
            child: "base",
        })?;
    let dim = dimension(base, dim)?;
    Ok(Shape::Prism {
        base: polygon(base, dim)?,
        height_m: length(element, "Prism", "height")?,
    })
}

/// Coordinates per position from `srsDimension`, else the CRS (EPSG::4979 is 3D), else the
/// shape's default. Accept WGS 84 only: EPSG::4326 (2D) and EPSG::4979 (3D), RFC 5491 §3.
/// A shape without `srsName` is taken as WGS 84.
fn dimension(element: &Element, default: usize) -> Result<usize, LocationError> {
    let from_crs = match element.attribute("srsName").map(str::trim) {
        None => default,
        Some(srs) if srs.ends_with("4326") => 2,
        Some(srs) if srs.ends_with("4979") => 3,
        Some(srs) => {
            return Err(LocationError::UnsupportedCrs {
                srs: srs.to_owned(),
            });
        }
    };
    Ok(element
        .attribute("srsDimension")
        .and_then(|d| d.trim().parse::<usize>().ok())
        .filter(|d| *d == 2 || *d == 3)
        .unwrap_or(from_crs))
}

/// The centre (`gml:pos`, or RFC 4119 `gml:coordinates`) of a shape.
fn centre(element: &Element, shape: &'static str) -> Result<Position, LocationError> {
    let (numbers, text) = if let Some(pos) = element.child(&[Ns::Gml, Ns::PidfLo], "pos") {
        let text = pos.text.trim();
        (decimal_numbers(text), text)
    } else if let Some(coordinates) = element.child(&[Ns::Gml], "coordinates") {
        let text = coordinates.text.trim();
        (legacy_coordinates(text), text)
    } else {
        return Err(LocationError::MissingElement {
            shape,
            child: "pos",
        });
    };
    let numbers = numbers.ok_or_else(|| invalid_position(text))?;
    // A 2D CRS with a third number, or a 3D CRS with two, is read as written.
    match numbers.as_slice() {
        [lat, lon] => position(*lat, *lon, None, text),
        [lat, lon, alt] => position(*lat, *lon, Some(*alt), text),
        _ => Err(invalid_position(text)),
    }
}

fn invalid_position(text: &str) -> LocationError {
    LocationError::InvalidPosition {
        text: text.chars().take(200).collect(),
    }
}

fn decimal_numbers(text: &str) -> Option<Vec<f64>> {
    text.split_ascii_whitespace()
        .map(|n| n.parse::<f64>().ok())
        .collect()
}

fn position(lat: f64, lon: f64, alt: Option<f64>, text: &str) -> Result<Position, LocationError> {
    if !(lat.is_finite() && lon.is_finite() && alt.is_none_or(f64::is_finite)) {
        return Err(invalid_position(text));
    }
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(LocationError::OutOfRange { lat, lon });
    }
    Ok(Position {
        lat,
        lon,
        alt_m: alt,
    })
}

/// The exterior ring of a `gml:Polygon` (RFC 5491 §5.2.2): `gml:posList`, or one `gml:pos`
/// per vertex, with `dim` numbers per position. The closing vertex (equal to the first) is
/// kept as written.
fn polygon(element: &Element, dim: usize) -> Result<Vec<Position>, LocationError> {
    let missing = LocationError::MissingElement {
        shape: "Polygon",
        child: "exterior",
    };
    let ring = element
        .child(&[Ns::Gml], "exterior")
        .and_then(|e| e.child(&[Ns::Gml], "LinearRing"))
        .ok_or(missing)?;
    let mut vertices = Vec::new();
    if let Some(list) = ring.child(&[Ns::Gml], "posList") {
        let text = list.text.trim();
        let dim = list
            .attribute("srsDimension")
            .and_then(|d| d.trim().parse::<usize>().ok())
            .filter(|d| *d == 2 || *d == 3)
            .unwrap_or(dim);
        let numbers = decimal_numbers(text).ok_or_else(|| invalid_position(text))?;
        if numbers.len() % dim != 0 || numbers.len() / dim > MAX_VERTICES {
            return Err(invalid_position(text));
        }
        for chunk in numbers.chunks(dim) {
            vertices.push(match chunk {
                [lat, lon] => position(*lat, *lon, None, text)?,
                [lat, lon, alt] => position(*lat, *lon, Some(*alt), text)?,
                _ => return Err(invalid_position(text)),
            });
        }
    } else {
        for pos in ring.children.iter().filter(|c| c.is(&[Ns::Gml], "pos")) {
            let text = pos.text.trim();
            let numbers = decimal_numbers(text).ok_or_else(|| invalid_position(text))?;
            vertices.push(match numbers.as_slice() {
                [lat, lon] => position(*lat, *lon, None, text)?,
                [lat, lon, alt] => position(*lat, *lon, Some(*alt), text)?,
                _ => return Err(invalid_position(text)),
            });
        }
    }
    // A linear ring has at least 4 positions, the last equal to the first (GML 3.1.1).
    if vertices.len() < 4 || vertices.len() > MAX_VERTICES {
        return Err(LocationError::InvalidPolygon {
            vertices: vertices.len(),
        });
    }
    Ok(vertices)
}

/// A length child (`radius`, `semiMajorAxis`…) in metres.
fn length(
    element: &Element,
    shape: &'static str,
    child: &'static str,
) -> Result<f64, LocationError> {
    let e = element
        .child(&[Ns::PidfLo, Ns::Gml], child)
        .ok_or(LocationError::MissingElement { shape, child })?;
    match e.attribute("uom").map(str::trim) {
        None | Some(UOM_METRE) => {}
        Some(uom) => {
            return Err(LocationError::UnsupportedUom {
                uom: uom.to_owned(),
            });
        }
    }
    let text = e.text.trim();
    text.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| LocationError::InvalidRadius {
            text: text.chars().take(200).collect(),
        })
}

/// An angle child (`orientation`, `startAngle`…) in degrees.
fn angle(
    element: &Element,
    shape: &'static str,
    child: &'static str,
) -> Result<f64, LocationError> {
    let e = element
        .child(&[Ns::PidfLo, Ns::Gml], child)
        .ok_or(LocationError::MissingElement { shape, child })?;
    let factor = match e.attribute("uom").map(str::trim) {
        None | Some(UOM_DEGREE) => 1.0,
        Some(UOM_RADIAN) => 180.0 / std::f64::consts::PI,
        Some(uom) => {
            return Err(LocationError::UnsupportedUom {
                uom: uom.to_owned(),
            });
        }
    };
    let text = e.text.trim();
    text.parse::<f64>()
        .ok()
        .filter(|a| a.is_finite())
        .map(|a| a * factor)
        .ok_or_else(|| LocationError::InvalidAngle {
            text: text.chars().take(200).collect(),
        })
}

/// `<civicAddress>` (RFC 5139 §4): every CAtype, trimmed; elements of other namespaces
/// (RFC 6848 extensions) kept as name/value.
fn civic(element: &Element) -> CivicAddress {
    let mut address = CivicAddress {
        language: element.attribute("lang").map(|l| l.trim().to_owned()),
        ..CivicAddress::default()
    };
    for child in &element.children {
        let Some(value) = child.trimmed_text() else {
            continue;
        };
        if child.ns == Ns::Civic {
            if !address.set(&child.local, value.clone()) {
                address.extensions.push(super::CivicExtension {
                    namespace: child.uri.clone(),
                    name: child.local.clone(),
                    value,
                });
            }
        } else {
            address.extensions.push(super::CivicExtension {
                namespace: child.uri.clone(),
                name: child.local.clone(),
                value,
            });
        }
    }
    address
}

/// `gml:coordinates` of RFC 4119: either decimal `lat,lon[,alt]` / `lat lon`, or
/// degrees:minutes:seconds with a hemisphere letter (`37:46:30N 122:25:10W`).
fn legacy_coordinates(text: &str) -> Option<Vec<f64>> {
    text.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .map(dms)
        .collect()
}

fn dms(token: &str) -> Option<f64> {
    let (body, sign) = match token.chars().last()? {
        'N' | 'n' | 'E' | 'e' => (token.get(..token.len() - 1)?, 1.0),
        'S' | 's' | 'W' | 'w' => (token.get(..token.len() - 1)?, -1.0),
        _ => (token, 1.0),
    };
    let mut value = 0.0;
    let mut scale = 1.0;
    for (i, field) in body.split(':').enumerate() {
        if i > 2 {
            return None;
        }
        let n = field.parse::<f64>().ok()?;
        if i > 0 && !(0.0..60.0).contains(&n) {
            return None;
        }
        value += n / scale;
        scale *= 60.0;
    }
    Some(sign * value)
}

/// Build the element tree of a well-formed document.
pub(super) fn parse_tree(xml: &[u8]) -> Result<Element, LocationError> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml).map_err(|_| LocationError::NotUtf8)?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|source| LocationError::Xml { position, source })?;
        match event {
            Event::Start(start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(LocationError::TooComplex);
                }
                stack.push(element(&resolved, &start));
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(LocationError::TooComplex);
                }
                let done = element(&resolved, &start);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or(LocationError::UnexpectedEof)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        Ok(None) => match r.xml10_content().as_ref() {
                            "lt" => Some('<'),
                            "gt" => Some('>'),
                            "amp" => Some('&'),
                            "apos" => Some('\''),
                            "quot" => Some('"'),
                            _ => None,
                        },
                        Err(source) => return Err(LocationError::Xml { position, source }),
                    };
                    if let Some(c) = resolved {
                        top.text.push(c);
                    }
                }
            }
            Event::Eof => return Err(LocationError::UnexpectedEof),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

fn element(resolved: &ResolveResult<'_>, start: &quick_xml::events::BytesStart<'_>) -> Element {
    let uri = match resolved {
        ResolveResult::Bound(ns) => <str as ToOwned>::to_owned(ns.as_ref()),
        _ => String::new(),
    };
    let attributes = start
        .attributes()
        .filter_map(Result::ok)
        .map(|a| {
            let local = a.key.local_name().as_ref().to_owned();
            let value = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.clone().into_owned());
            (local, value)
        })
        .collect();
    Element {
        ns: Ns::from_uri(&uri),
        uri,
        local: start.local_name().as_ref().to_owned(),
        attributes,
        children: Vec::new(),
        text: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dms_conversion() {
        assert!((dms("37:46:30N").unwrap() - 37.775).abs() < 1e-9);
        assert!((dms("122:25:10W").unwrap() + 122.419_444_444).abs() < 1e-6);
        assert_eq!(dms("12.5"), Some(12.5));
        assert_eq!(dms("1:99:0N"), None);
        assert_eq!(dms("N"), None);
    }

    #[test]
    fn namespaces_by_uri_not_prefix() {
        let xml = br#"<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf"
            xmlns:x="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:g="http://www.opengis.net/gml">
            <p:tuple id="t"><p:status><x:geopriv><x:location-info>
            <g:Point><g:pos>1.5 2.5</g:pos></g:Point></x:location-info>
            <x:method>GPS</x:method></x:geopriv></p:status></p:tuple></p:presence>"#;
        let locations = parse_pidf(xml).unwrap();
        assert_eq!(locations.len(), 1);
        assert_eq!(
            locations[0].shape,
            Shape::Point {
                lat: 1.5,
                lon: 2.5,
                alt_m: None
            }
        );
        assert_eq!(locations[0].method.as_deref(), Some("GPS"));
        assert_eq!(locations[0].source.id.as_deref(), Some("t"));

        // The right local names in the wrong namespace are not a location.
        let wrong = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple><status>
            <geopriv><location-info><Point><pos>1 2</pos></Point></location-info></geopriv>
            </status></tuple></presence>"#;
        assert!(parse_pidf(wrong).unwrap().is_empty());
    }

    #[test]
    fn shape_errors() {
        let doc = |shape: &str| {
            format!(
                r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
                xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
                xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0">
                <tuple id="x"><status><gp:geopriv><gp:location-info>{shape}</gp:location-info>
                </gp:geopriv></status></tuple></presence>"#
            )
        };
        let parse = |shape: &str| parse_pidf(doc(shape).as_bytes());
        assert!(matches!(
            parse("<gml:Point><gml:pos>91 0</gml:pos></gml:Point>"),
            Err(LocationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("<gml:Point><gml:pos>1 two</gml:pos></gml:Point>"),
            Err(LocationError::InvalidPosition { .. })
        ));
        assert!(matches!(
            parse("<gml:Point><gml:pos>1 2 3 4</gml:pos></gml:Point>"),
            Err(LocationError::InvalidPosition { .. })
        ));
        assert!(matches!(
            parse("<gml:Point/>"),
            Err(LocationError::MissingElement { .. })
        ));
        assert!(matches!(
            parse(
                r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::27700"><gml:pos>1 2</gml:pos></gml:Point>"#
            ),
            Err(LocationError::UnsupportedCrs { .. })
        ));
        assert!(matches!(
            parse(
                r#"<gs:Circle><gml:pos>1 2</gml:pos><gs:radius uom="urn:ogc:def:uom:EPSG::9002">3</gs:radius></gs:Circle>"#
            ),
            Err(LocationError::UnsupportedUom { .. })
        ));
        assert!(matches!(
            parse(
                r#"<gs:Circle><gml:pos>1 2</gml:pos><gs:radius uom="urn:ogc:def:uom:EPSG::9001">-3</gs:radius></gs:Circle>"#
            ),
            Err(LocationError::InvalidRadius { .. })
        ));
        assert_eq!(
            parse(r#"<gml:LineString><gml:pos>1 2</gml:pos></gml:LineString>"#).unwrap()[0].shape,
            Shape::Other("LineString".to_owned())
        );
        assert!(matches!(
            parse(r#"<gs:Ellipse><gml:pos>1 2</gml:pos></gs:Ellipse>"#),
            Err(LocationError::MissingElement {
                shape: "Ellipse",
                child: "semiMajorAxis"
            })
        ));
    }

    #[test]
    fn shape_units_dimensions_and_polygon_errors() {
        let doc = |shape: &str| {
            format!(
                r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
                xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
                xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0">
                <tuple id="x"><status><gp:geopriv><gp:location-info>{shape}</gp:location-info>
                </gp:geopriv></status></tuple></presence>"#
            )
        };
        let parse = |shape: &str| parse_pidf(doc(shape).as_bytes());
        // Radians converted to degrees; a missing uom is metres / degrees.
        let l = parse(
            r#"<gs:Ellipse><gml:pos>1 2</gml:pos><gs:semiMajorAxis>10</gs:semiMajorAxis>
            <gs:semiMinorAxis uom="urn:ogc:def:uom:EPSG::9001">5</gs:semiMinorAxis>
            <gs:orientation uom="urn:ogc:def:uom:EPSG::9101">3.141592653589793</gs:orientation>
            </gs:Ellipse>"#,
        )
        .unwrap();
        let Shape::Ellipse {
            semi_major_m,
            semi_minor_m,
            orientation_deg,
            ..
        } = l[0].shape
        else {
            panic!("{:?}", l[0].shape)
        };
        assert_eq!((semi_major_m, semi_minor_m), (10.0, 5.0));
        assert!((orientation_deg - 180.0).abs() < 1e-9);
        assert!(matches!(
            parse(
                r#"<gs:Ellipse><gml:pos>1 2</gml:pos><gs:semiMajorAxis>1</gs:semiMajorAxis>
                <gs:semiMinorAxis>1</gs:semiMinorAxis><gs:orientation>north</gs:orientation></gs:Ellipse>"#
            ),
            Err(LocationError::InvalidAngle { .. })
        ));
        // posList with srsDimension 3 on a 2D CRS name is read as 3D.
        let l = parse(
            r#"<gml:Polygon><gml:exterior><gml:LinearRing><gml:posList srsDimension="3">
            1 1 5 1 2 5 2 2 5 1 1 5</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"#,
        )
        .unwrap();
        let Shape::Polygon { vertices } = &l[0].shape else {
            panic!("{:?}", l[0].shape)
        };
        assert_eq!(vertices.len(), 4);
        assert_eq!(vertices[2].alt_m, Some(5.0));
        // A ring needs 4 positions; a posList a multiple of the dimension.
        assert!(matches!(
            parse(
                r#"<gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>1 1 1 2 1 1
                </gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"#
            ),
            Err(LocationError::InvalidPolygon { vertices: 3 })
        ));
        assert!(matches!(
            parse(
                r#"<gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>1 1 1
                </gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"#
            ),
            Err(LocationError::InvalidPosition { .. })
        ));
        assert!(matches!(
            parse(r#"<gml:Polygon/>"#),
            Err(LocationError::MissingElement {
                shape: "Polygon",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"<gs:Prism><gs:height>1</gs:height></gs:Prism>"#),
            Err(LocationError::MissingElement {
                shape: "Prism",
                child: "base"
            })
        ));
        assert!(matches!(
            parse(r#"<gs:Sphere srsName="EPSG:3857"><gml:pos>1 2 3</gml:pos></gs:Sphere>"#),
            Err(LocationError::UnsupportedCrs { .. })
        ));
        // Legacy civicLoc namespace (RFC 4119) is read as a civic address.
        let l = parse(
            r#"<c:civicAddress xmlns:c="urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc">
            <c:country> MA </c:country><c:A3>Casablanca</c:A3></c:civicAddress>"#,
        )
        .unwrap();
        let Shape::Civic(c) = &l[0].shape else {
            panic!("{:?}", l[0].shape)
        };
        assert_eq!(c.country.as_deref(), Some("MA"));
        assert_eq!(c.a3.as_deref(), Some("Casablanca"));
    }

    #[test]
    fn malformed_documents() {
        assert!(matches!(
            parse_pidf(b"<presence"),
            Err(LocationError::Xml { .. })
        ));
        assert!(matches!(
            parse_pidf(b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"><tuple>"),
            Err(LocationError::UnexpectedEof)
        ));
        assert!(matches!(
            parse_pidf(b"<a></b>"),
            Err(LocationError::Xml { .. })
        ));
        assert!(matches!(parse_pidf(b""), Err(LocationError::UnexpectedEof)));
        assert!(matches!(
            parse_pidf(b"\xff\xfe<"),
            Err(LocationError::NotUtf8)
        ));
        assert!(matches!(
            parse_pidf(b"<other/>"),
            Err(LocationError::NotPidf { .. })
        ));
        let deep = "<a>".repeat(100);
        assert!(matches!(
            parse_pidf(deep.as_bytes()),
            Err(LocationError::TooComplex)
        ));
    }
}
