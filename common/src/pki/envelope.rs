//! The strict reading of a certificate's outer DER envelope. The CA signs only the
//! TBSCertificate; the SEQUENCE around it, the signature algorithm and the
//! signature's BIT STRING are not signed, and x509-parser reads them leniently (it
//! ignores bytes after the signature inside the outer SEQUENCE). So one issued
//! certificate could be presented as many different byte strings, and anything that
//! names a certificate by its bytes (digests, pinning, logs) would be fooled. The
//! verifier takes only the one encoding the CA issues: DER's minimal definite
//! lengths, exactly three elements, the outer algorithm identical to the signed one
//! (found by fuzzing, pki/cert_fuzz.rs).

use super::PkiError;

fn malformed(why: &str) -> PkiError {
    PkiError::MalformedCertificate(format!("not the DER encoding the CA issues: {why}"))
}

/// One DER element: its tag, the whole element's bytes, its content, and what
/// follows it.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
    rest: &'a [u8],
}

/// Reads one element, refusing what DER forbids: high tag numbers (no certificate
/// field uses them), indefinite lengths and lengths not in their shortest form.
fn tlv(input: &[u8]) -> Result<Tlv<'_>, PkiError> {
    let (&tag, after_tag) = input.split_first().ok_or_else(|| malformed("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(malformed("high tag number"));
    }
    let (&first, mut after_len) = after_tag
        .split_first()
        .ok_or_else(|| malformed("truncated"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 {
            return Err(malformed("indefinite length"));
        }
        if n > 4 || after_len.len() < n {
            return Err(malformed("length out of range"));
        }
        let (digits, rest) = after_len.split_at(n);
        if digits[0] == 0 {
            return Err(malformed("length not in its shortest form"));
        }
        let len = digits
            .iter()
            .fold(0usize, |acc, d| (acc << 8) | usize::from(*d));
        if len < 0x80 {
            return Err(malformed("long form for a short length"));
        }
        after_len = rest;
        len
    };
    if after_len.len() < len {
        return Err(malformed("truncated"));
    }
    let header = input.len() - after_len.len();
    let (content, rest) = after_len.split_at(len);
    Ok(Tlv {
        tag,
        whole: &input[..header + len],
        content,
        rest,
    })
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
/// `[0] EXPLICIT Version`, present in every v3 certificate.
const VERSION: u8 = 0xa0;

/// Checks that `der` is exactly SEQUENCE { `tbs`, AlgorithmIdentifier, BIT STRING }
/// in DER, with `tbs` the TBSCertificate the parser read and the outer algorithm
/// the same bytes as the one inside `tbs` (which the signature covers).
pub(super) fn check(der: &[u8], tbs: &[u8]) -> Result<(), PkiError> {
    let outer = tlv(der)?;
    if outer.tag != SEQUENCE {
        return Err(malformed("not a SEQUENCE"));
    }
    if !outer.rest.is_empty() {
        return Err(malformed("bytes after the certificate"));
    }
    let tbs_el = tlv(outer.content)?;
    let alg = tlv(tbs_el.rest)?;
    let sig = tlv(alg.rest)?;
    if !sig.rest.is_empty() {
        return Err(malformed("bytes after the signature"));
    }
    if tbs_el.whole != tbs || tbs_el.tag != SEQUENCE {
        return Err(malformed("the signed part is not the first element"));
    }
    if alg.tag != SEQUENCE || sig.tag != BIT_STRING {
        return Err(malformed("unexpected element"));
    }
    // Inside the TBSCertificate: version, serial, then the signed algorithm.
    let mut field = tlv(tbs_el.content)?;
    if field.tag == VERSION {
        field = tlv(field.rest)?;
    }
    let signed_alg = tlv(field.rest)?;
    if signed_alg.whole != alg.whole {
        return Err(malformed(
            "the signature algorithm differs from the signed one",
        ));
    }
    // A signature is whole bytes: no unused bits.
    if sig.content.first() != Some(&0) {
        return Err(malformed("signature has unused bits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_be_in_their_shortest_form() {
        assert!(tlv(&[0x04, 0x01, 0xaa]).is_ok());
        assert!(tlv(&[0x04, 0x81, 0x01, 0xaa]).is_err());
        assert!(tlv(&[0x04, 0x82, 0x00, 0x01, 0xaa]).is_err());
        assert!(tlv(&[0x04, 0x80, 0xaa, 0x00, 0x00]).is_err());
        assert!(tlv(&[0x04, 0x02, 0xaa]).is_err());
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(tlv(&long).unwrap().content.len(), 0x80);
    }
}
