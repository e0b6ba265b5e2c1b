//! G.711 companding (ITU-T G.711): µ-law (PCMU, RTP payload type 0) and A-law (PCMA, payload
//! type 8), RFC 3551 §4.5.14. One octet per sample at 8000 samples per second.
//!
//! Encoding follows the reference segment search of the ITU-T/Sun `g711.c` code; decoding is a
//! 256-entry table built at compile time (no allocation, no branch per sample).

/// µ-law decoding table: octet → 16-bit linear sample.
const ULAW_TO_LINEAR: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_slow(i as u8);
        i += 1;
    }
    table
};

/// A-law decoding table: octet → 16-bit linear sample.
const ALAW_TO_LINEAR: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_slow(i as u8);
        i += 1;
    }
    table
};

/// The µ-law octet of digital silence (linear 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law octet of digital silence (linear 0 encodes as +8 → 0xD5).
pub const ALAW_SILENCE: u8 = 0xD5;

const fn ulaw_decode_slow(octet: u8) -> i16 {
    let u = !octet;
    let mut t: i32 = (((u & 0x0F) as i32) << 3) + 0x84;
    t <<= ((u & 0x70) >> 4) as i32;
    if u & 0x80 != 0 {
        (0x84 - t) as i16
    } else {
        (t - 0x84) as i16
    }
}

const fn alaw_decode_slow(octet: u8) -> i16 {
    let a = octet ^ 0x55;
    let mut t: i32 = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

/// Decode one µ-law octet to a 16-bit linear sample (range ±32124).
pub fn ulaw_to_linear(octet: u8) -> i16 {
    ULAW_TO_LINEAR[usize::from(octet)]
}

/// Decode one A-law octet to a 16-bit linear sample (range ±32256).
pub fn alaw_to_linear(octet: u8) -> i16 {
    ALAW_TO_LINEAR[usize::from(octet)]
}

/// Index of the first segment end ≥ `value`, or 8 when above the last one.
fn segment(value: i32, ends: &[i32; 8]) -> i32 {
    let mut seg = 0;
    for end in ends {
        if value <= *end {
            return seg;
        }
        seg += 1;
    }
    seg
}

/// Encode a 16-bit linear sample as µ-law (14-bit magnitude, clipped at 8159 × 4).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut value = i32::from(sample) >> 2;
    let mask: i32 = if value < 0 {
        value = -value;
        0x7F
    } else {
        0xFF
    };
    value = value.min(8159) + 0x21;
    let seg = segment(value, &ENDS);
    let code = if seg >= 8 {
        0x7F
    } else {
        (seg << 4) | ((value >> (seg + 1)) & 0x0F)
    };
    ((code ^ mask) & 0xFF) as u8
}

/// Encode a 16-bit linear sample as A-law (13-bit magnitude).
pub fn linear_to_alaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut value = i32::from(sample) >> 3;
    let mask: i32 = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    let seg = segment(value, &ENDS);
    let code = if seg >= 8 {
        0x7F
    } else if seg < 2 {
        (seg << 4) | ((value >> 1) & 0x0F)
    } else {
        (seg << 4) | ((value >> seg) & 0x0F)
    };
    ((code ^ mask) & 0xFF) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        // Values from the ITU-T G.711 tables (as in Sun's g711.c and SpanDSP).
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        assert_eq!(ulaw_to_linear(0xEF), 132);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7E); // magnitude 1 rounds to −8
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(ulaw_to_linear(0xCE), 988);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(alaw_to_linear(0xFA), 1008);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for octet in 0..=255u8 {
            let u = ulaw_to_linear(octet);
            // 0x7F (negative zero) re-encodes as positive zero 0xFF.
            let expected = if octet == 0x7F { 0xFF } else { octet };
            assert_eq!(linear_to_ulaw(u), expected, "µ-law {octet:#04x} → {u}");
            let a = alaw_to_linear(octet);
            assert_eq!(linear_to_alaw(a), octet, "A-law {octet:#04x} → {a}");
        }
    }
}
