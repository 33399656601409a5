//! AWS Signature V4 verification, written from the specification, and its check against the
//! AWS test-suite vectors: the fake AWS proves every Lambda call was signed right with it.

use super::*;

// ---------------------------------------------------------------------------------------------
// AWS Signature V4, written from the specification (the method of the AWS SigV4 test suite).

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub(super) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding of everything but the unreserved characters, upper-case hex (SigV4's
/// `UriEncode`).
pub(super) fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The canonical URI of a path as it travels on the wire (already percent-encoded once): every
/// segment is encoded again, as SigV4 requires for every service but S3.
pub(super) fn canonical_uri(wire_path: &str) -> String {
    if wire_path.is_empty() {
        return "/".into();
    }
    wire_path.split('/').map(uri_encode).collect::<Vec<_>>().join("/")
}

/// Header value as SigV4 canonicalises it: trimmed, runs of spaces collapsed to one.
pub(super) fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A request as the verifier sees it.
pub(super) struct SignedRequest<'a> {
    pub(super) method: &'a str,
    /// Path as sent (percent-encoded).
    pub(super) path: &'a str,
    /// Every header (any case, repeats allowed).
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: &'a [u8],
}

impl SignedRequest<'_> {
    pub(super) fn values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.values(name).first().copied()
    }
}

pub(super) fn canonical_request(request: &SignedRequest, signed_headers: &[&str]) -> String {
    let mut text = format!("{}\n{}\n\n", request.method, canonical_uri(request.path));
    for name in signed_headers {
        let values: Vec<String> = request.values(name).iter().map(|v| canonical_value(v)).collect();
        text.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    text.push_str(&format!("\n{}\n{}", signed_headers.join(";"), sha256_hex(request.body)));
    text
}

pub(super) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

pub(super) fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
) -> String {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()))
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`.
pub(super) struct Authorization {
    pub(super) access_key_id: String,
    pub(super) date: String,
    pub(super) region: String,
    pub(super) service: String,
    pub(super) signed_headers: Vec<String>,
    pub(super) signature: String,
}

pub(super) fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not AWS4-HMAC-SHA256")?;
    let mut parts = HashMap::new();
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or("malformed Authorization")?;
        parts.insert(key, value);
    }
    let credential: Vec<&str> = parts.get("Credential").ok_or("no Credential")?.split('/').collect();
    let [access_key_id, date, region, service, terminator] = credential[..] else {
        return Err("malformed Credential".into());
    };
    if terminator != "aws4_request" {
        return Err("the scope does not end in aws4_request".into());
    }
    Ok(Authorization {
        access_key_id: access_key_id.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
        signed_headers: parts
            .get("SignedHeaders")
            .ok_or("no SignedHeaders")?
            .split(';')
            .map(String::from)
            .collect(),
        signature: parts.get("Signature").ok_or("no Signature")?.to_string(),
    })
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day count (inverse of [`days_from_civil`]).
pub(super) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
}

/// `20150830T123600Z` as Unix seconds.
pub(super) fn parse_amz_date(text: &str) -> Option<i64> {
    if text.len() != 16 || &text[8..9] != "T" || !text.ends_with('Z') {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    Some(days * 86400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?)
}

/// A time as RFC 3339 in whole seconds (the metadata service's `Expiration` format).
pub(super) fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Checks the signature of `request` with the secret of the key it names; returns that key id.
pub(super) fn verify_signature(
    request: &SignedRequest,
    secrets: &HashMap<String, String>,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<String, String> {
    let authorization = parse_authorization(request.header("authorization").ok_or("no Authorization")?)?;
    let secret = secrets.get(&authorization.access_key_id).ok_or("unknown access key")?;
    if authorization.region != region || authorization.service != service {
        return Err(format!(
            "scope {}/{} instead of {region}/{service}",
            authorization.region, authorization.service
        ));
    }
    let amz_date = request.header("x-amz-date").ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(&authorization.date) {
        return Err("the scope date is not the X-Amz-Date".into());
    }
    let signed_at = parse_amz_date(amz_date).ok_or("malformed X-Amz-Date")?;
    let now = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - signed_at).abs() > 300 {
        return Err("X-Amz-Date is more than 5 minutes off".into());
    }
    let signed: Vec<&str> = authorization.signed_headers.iter().map(String::as_str).collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != signed || signed.iter().any(|h| h.to_ascii_lowercase() != *h) {
        return Err("SignedHeaders are not sorted lower-case names".into());
    }
    let mut required = vec!["content-type", "host", "x-amz-date", "x-amz-invocation-type"];
    if request.header("x-amz-security-token").is_some() {
        required.push("x-amz-security-token");
    }
    for name in required {
        if !signed.contains(&name) {
            return Err(format!("{name} is not signed"));
        }
    }
    let creq = canonical_request(request, &signed);
    let scope = format!("{}/{region}/{service}/aws4_request", authorization.date);
    let sts = string_to_sign(amz_date, &scope, &creq);
    let expected = signature(secret, &authorization.date, region, service, &sts);
    if expected != authorization.signature {
        return Err("signature mismatch".into());
    }
    Ok(authorization.access_key_id)
}

// ---------------------------------------------------------------------------------------------
// The verifier against AWS SigV4 test-suite vectors (aws-signing-test-suite/v4, copied as is).

pub(super) const TEST_SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

pub(super) fn check_vector(
    request: SignedRequest,
    signed: &[&str],
    creq: &str,
    sts: &str,
    expected_signature: &str,
) {
    assert_eq!(canonical_request(&request, signed), creq);
    let computed_sts = string_to_sign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", creq);
    assert_eq!(computed_sts, sts);
    assert_eq!(signature(TEST_SUITE_SECRET, "20150830", "us-east-1", "service", sts), expected_signature);
}

pub(super) fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

#[test]
pub(super) fn verifier_matches_vector_get_vanilla_with_session_token() {
    let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    let request = SignedRequest {
        method: "GET",
        path: "/",
        headers: headers(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Security-Token", token),
            ("X-Amz-Date", "20150830T123600Z"),
        ]),
        body: b"",
    };
    check_vector(
        request,
        &["host", "x-amz-date", "x-amz-security-token"],
        &format!(
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{token}\n\n\
             host;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
        "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
    );
}

#[test]
pub(super) fn verifier_matches_vector_get_header_value_trim() {
    let request = SignedRequest {
        method: "GET",
        path: "/",
        headers: headers(&[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", " value1"),
            ("My-Header2", " \"a   b   c\""),
            ("X-Amz-Date", "20150830T123600Z"),
        ]),
        body: b"",
    };
    check_vector(
        request,
        &["host", "my-header1", "my-header2", "x-amz-date"],
        "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n\
         host;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    );
}

#[test]
pub(super) fn verifier_matches_vector_post_x_www_form_urlencoded() {
    let sha = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
    let request = SignedRequest {
        method: "POST",
        path: "/",
        headers: headers(&[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.amazonaws.com"),
            ("Content-Length", "13"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("x-amz-content-sha256", sha),
        ]),
        body: b"Param1=value1",
    };
    check_vector(
        request,
        &["content-length", "content-type", "host", "x-amz-content-sha256", "x-amz-date"],
        &format!(
            "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n\
             x-amz-content-sha256:{sha}\nx-amz-date:20150830T123600Z\n\n\
             content-length;content-type;host;x-amz-content-sha256;x-amz-date\n{sha}"
        ),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
        "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
    );
}

#[test]
pub(super) fn verifier_matches_vectors_for_paths_and_dates() {
    // double-encode-path: the wire path is encoded again.
    assert_eq!(
        canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"),
        "/test/%40connections/JBDvjfGEIAMCERw%253D"
    );
    // get-unreserved.
    let unreserved = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    assert_eq!(canonical_uri(unreserved), unreserved);
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_440_938_160)), "2015-08-30T12:36:00Z");
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
}
