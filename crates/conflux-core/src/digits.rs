//! Reading decimal digits fast, for the parsers of every dialect: numbers
//! are most of a Graphite or OpenTSDB line's bytes.

/// 10^0 to 10^19, every power of ten a u64 holds: scaling digits read
/// eight at a time, fractions of a second to nanoseconds, and the exact
/// division of [`decimal`].
pub const POW10_U64: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// Powers of ten, all exact as f64 (10^22 is the largest that is): with a
/// mantissa below 2^53, one division by one of them rounds once, correctly
/// (Clinger's fast path).
pub const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `mantissa / 10^frac_digits`, correctly rounded (to nearest, ties to
/// even); `None` past 22 fraction digits, or past 19 for a mantissa of
/// 2^53 or more.
///
/// Below 2^53 it is Clinger's fast path: the mantissa and the power of ten
/// are exact, so one division rounds once. Telegraf's and Python's shortest
/// round-trip floats have up to 17 digits, and about a fifth of them pass
/// 2^53; those are divided exactly in 128-bit integers instead, with the
/// remainder deciding the rounding (std's parser would need the token as a
/// `str` and a general algorithm for the same answer).
#[inline]
pub fn decimal(mantissa: u64, frac_digits: usize) -> Option<f64> {
    if mantissa < (1 << 53) {
        return Some(mantissa as f64 / *POW10.get(frac_digits)?);
    }
    let den = *POW10_U64.get(frac_digits)?;
    if den == 1 {
        // An integer: the conversion rounds to nearest, ties to even.
        return Some(mantissa as f64);
    }
    // Scale the numerator so that the quotient has 55 bits at least (53,
    // a rounding bit and one more); it stays below 2^120.
    let bits = |x: u128| 128 - x.leading_zeros();
    let scale = (55 + bits(u128::from(den))).saturating_sub(bits(u128::from(mantissa)));
    let num = u128::from(mantissa) << scale;
    let q = num / u128::from(den);
    let inexact = q * u128::from(den) != num;
    let drop = bits(q) - 53;
    let mut kept = (q >> drop) as u64;
    let rest = q & ((1 << drop) - 1);
    let half = 1u128 << (drop - 1);
    if rest > half || (rest == half && (inexact || kept & 1 == 1)) {
        kept += 1;
    }
    // `kept` < 2^54 and `drop - scale` > -70: both exact in an f64.
    let exp = i64::from(drop) - i64::from(scale);
    Some(kept as f64 * f64::from_bits(((1023 + exp) as u64) << 52))
}

/// The digits at the start of `b` appended to `acc` (wrapping: callers
/// bound the count), and how many there were.
///
/// Eight at a time (SWAR) when `b` holds eight bytes: timestamps and
/// values are 10 to 17 digits, and a byte loop spends most of its time on
/// its own bookkeeping.
#[inline(always)]
pub fn leading_digits(b: &[u8], mut acc: u64) -> (u64, usize) {
    const LO: u64 = 0x0101_0101_0101_0101;
    let mut i = 0;
    if b.len() < 8 {
        while let Some(&c) = b.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        return (acc, i);
    }
    let load = |at: usize| {
        b.get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(0, |c| u64::from_le_bytes(*c))
    };
    while i < b.len() {
        let rest = b.len() - i;
        // Past the last eight bytes: the last eight, shifted so that zero
        // bytes (no digits) stand past the end.
        let x = if rest >= 8 {
            load(i)
        } else {
            load(b.len() - 8) >> (8 * (8 - rest))
        };
        // Non-zero in each byte that is no digit (its high nibble is not 3,
        // or adding 6 carries into it); a carry only runs up from a byte
        // that is no digit itself, so the lowest mark is exact.
        let other = ((x & (LO * 0xF0)) ^ (LO * 0x30))
            | ((x.wrapping_add(LO * 0x06) & (LO * 0xF0)) ^ (LO * 0x30));
        let k = if other == 0 {
            8
        } else {
            (other.trailing_zeros() / 8) as usize
        };
        if k == 0 {
            break;
        }
        // The k digits' values in the top bytes, zeros (leading zero digits)
        // below: borrows only run up from bytes that are no digits.
        let d = x.wrapping_sub(LO * u64::from(b'0')) << (8 * (8 - k));
        // Eight digits to a number, first digit in the lowest byte.
        let d = d.wrapping_mul(10).wrapping_add(d >> 8);
        let lo = (d & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32));
        let hi = ((d >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32));
        acc = acc
            .wrapping_mul(POW10_U64[k])
            .wrapping_add(lo.wrapping_add(hi) >> 32);
        i += k;
        if k < 8 {
            break;
        }
    }
    (acc, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// What a byte loop gives, for any bytes and any start value.
        #[test]
        fn leading_digits_reads_what_a_byte_loop_reads(
            b in proptest::collection::vec(proptest::sample::select(b"0123456789./:e-9 ".to_vec()), 0..40),
            acc in 0u64..1000,
        ) {
            let mut want = acc;
            let mut n = 0;
            for &c in &b {
                if !c.is_ascii_digit() {
                    break;
                }
                want = want.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                n += 1;
            }
            proptest::prop_assert_eq!(leading_digits(&b, acc), (want, n));
        }
    }

    proptest::proptest! {
        /// What std's parser makes of the same digits, for mantissas of
        /// every size (most past 2^53) and 0 to 19 fraction digits.
        #[test]
        fn decimals_round_as_the_standard_parser_does(
            mantissa in proptest::prop_oneof![
                0u64..(1 << 53),
                (1u64 << 53)..(1 << 60),
                proptest::num::u64::ANY,
                (1u64 << 53)..(1 << 53) + 1000,
            ],
            frac in 0usize..20,
        ) {
            let digits = format!("{mantissa:0>width$}", width = frac + 1);
            let (int, fraction) = digits.split_at(digits.len() - frac);
            let text = format!("{int}.{fraction}");
            let want: f64 = text.parse().unwrap_or_default();
            proptest::prop_assert_eq!(decimal(mantissa, frac).map(f64::to_bits), Some(want.to_bits()), "{}", text);
        }
    }

    #[test]
    fn decimals_at_rounding_ties_go_to_even() {
        // 2^53 + 1 and 2^53 + 3 lie halfway between two floats.
        assert_eq!(
            decimal(9_007_199_254_740_993, 0),
            Some(9_007_199_254_740_992.0)
        );
        assert_eq!(
            decimal(90_071_992_547_409_930, 1),
            Some(9_007_199_254_740_992.0)
        );
        assert_eq!(
            decimal(90_071_992_547_409_931, 1),
            Some(9_007_199_254_740_994.0)
        );
        assert_eq!(
            decimal(9_007_199_254_740_995, 0),
            Some(9_007_199_254_740_996.0)
        );
        assert_eq!(decimal(u64::MAX, 19), Some(1.8446744073709552));
        assert_eq!(decimal(1, 22), Some(1e-22));
        assert_eq!(decimal(1, 23), None);
        assert_eq!(decimal(1 << 53, 20), None);
    }

    #[test]
    fn powers_of_ten_are_exact() {
        for (i, p) in POW10.iter().enumerate() {
            assert_eq!(*p, format!("1e{i}").parse::<f64>().unwrap());
        }
    }
}
