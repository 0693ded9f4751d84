use super::*;

#[test]
fn ids() {
    for ok in ["a", "req-1", "A.b_c-9", &"x".repeat(63)] {
        assert_eq!(validate_id(ok).unwrap(), ok);
    }
    for bad in [
        "",
        ".hidden",
        "-flag",
        "a/b",
        "../x",
        "a b",
        "a\nb",
        "a\0b",
        "é",
        &"x".repeat(64),
        &"y".repeat(10 << 10),
    ] {
        let e = validate_id(bad).unwrap_err().to_string();
        assert!(e.len() < 200, "the message stays short: {e}");
    }
}
