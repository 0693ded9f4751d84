//! The two hash functions of the journal's hash tables, written from their published
//! definitions: SipHash-2-4 (Aumasson and Bernstein, 2012), keyed with the file's `file_id` in
//! files with the `KEYED_HASH` flag, and Bob Jenkins' lookup3 `hashlittle2` (2006) in older
//! files, its two 32-bit results joined into one 64-bit value (primary result high).

/// SipHash-2-4 of `data` under the 128-bit `key` (two little-endian 64-bit halves).
pub fn siphash24(data: &[u8], key: &[u8; 16]) -> u64 {
    let (k0, k1) = key.split_at(8);
    let k0 = le64(k0);
    let k1 = le64(k1);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut blocks = data.chunks_exact(8);
    for block in blocks.by_ref() {
        let m = le64(block);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    // The last block: the remaining bytes, and the length's low byte on top.
    let mut last = (data.len() as u64) << 56;
    for (i, b) in blocks.remainder().iter().enumerate() {
        last |= u64::from(*b) << (8 * i);
    }
    v[3] ^= last;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// Up to 8 bytes as a little-endian integer (missing high bytes are zero).
fn le64(b: &[u8]) -> u64 {
    b.iter()
        .take(8)
        .enumerate()
        .fold(0, |acc, (i, x)| acc | u64::from(*x) << (8 * i))
}

fn le32(b: &[u8]) -> u32 {
    b.iter()
        .take(4)
        .enumerate()
        .fold(0, |acc, (i, x)| acc | u32::from(*x) << (8 * i))
}

/// lookup3's `mix`: three words stirred reversibly.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's `final`: the last mixing of the three words into `c` (and `b`).
fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

/// lookup3's `hashlittle2`: the primary and secondary 32-bit hashes of `data`, from the seeds
/// `pc` and `pb` (byte-wise reads, so the same on every architecture).
pub fn hashlittle2(data: &[u8], pc: u32, pb: u32) -> (u32, u32) {
    // The length is mixed in modulo 2^32, as the C code's `(uint32_t)length` does.
    let init = 0xdead_beef_u32
        .wrapping_add(data.len() as u32)
        .wrapping_add(pc);
    let (mut a, mut b, mut c) = (init, init, init.wrapping_add(pb));
    if data.is_empty() {
        return (c, b);
    }
    let mut rest = data;
    while rest.len() > 12 {
        a = a.wrapping_add(le32(&rest[0..4]));
        b = b.wrapping_add(le32(&rest[4..8]));
        c = c.wrapping_add(le32(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    // The last 1..=12 bytes, zero-padded.
    let mut tail = [0u8; 12];
    tail[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(le32(&tail[0..4]));
    b = b.wrapping_add(le32(&tail[4..8]));
    c = c.wrapping_add(le32(&tail[8..12]));
    finish(&mut a, &mut b, &mut c);
    (c, b)
}

/// The journal's unkeyed 64-bit hash: `hashlittle2` from zero seeds, primary result high.
pub fn jenkins_hash64(data: &[u8]) -> u64 {
    let (c, b) = hashlittle2(data, 0, 0);
    u64::from(c) << 32 | u64::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SipHash paper's vectors: key 00..0f, messages 00..(n-1).
    #[test]
    fn siphash24_reference_vectors() {
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..64).map(|i| i as u8).collect();
        assert_eq!(siphash24(&[], &key), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&msg[..1], &key), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&msg[..8], &key), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(&msg[..15], &key), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(&msg[..63], &key), 0x958a_324c_eb06_4572);
    }

    /// lookup3.c's own self-test values (`driver5`).
    #[test]
    fn hashlittle2_reference_vectors() {
        let four = b"Four score and seven years ago";
        assert_eq!(hashlittle2(b"", 0, 0), (0xdead_beef, 0xdead_beef));
        assert_eq!(hashlittle2(b"", 0, 0xdead_beef), (0xbd5b_7dde, 0xdead_beef));
        assert_eq!(
            hashlittle2(b"", 0xdead_beef, 0xdead_beef),
            (0x9c09_3ccd, 0xbd5b_7dde)
        );
        assert_eq!(hashlittle2(four, 0, 0), (0x1777_0551, 0xce72_26e6));
        assert_eq!(hashlittle2(four, 0, 1), (0xe360_7cae, 0xbd37_1de4));
        assert_eq!(hashlittle2(four, 1, 0), (0xcd62_8161, 0x6cbe_a4b3));
        assert_eq!(jenkins_hash64(four), 0x1777_0551_ce72_26e6);
    }
}
