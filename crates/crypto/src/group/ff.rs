//! The finite-field groups (RFC 3526 MODP-2048, RFC 5114 §2.1 and §2.3): their parameters and
//! their operations on canonical byte strings.

use super::*;

/// RFC 3526 §3, the 2048-bit MODP group (id 14): p = 2^2048 − 2^1984 − 1 + 2^64 · ([2^1918 π] +
/// 124476), generator 2.
const MODP2048_P: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1\
    29024E088A67CC74020BBEA63B139B22514A08798E3404DD\
    EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245\
    E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D\
    C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F\
    83655D23DCA3AD961C62F356208552BB9ED529077096966D\
    670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9\
    DE2BCBF6955817183995497CEA956AE515D2261898FA0510\
    15728E5A8AACAA68FFFFFFFFFFFFFFFF";

/// RFC 5114 §2.1, 1024-bit MODP group with 160-bit prime-order subgroup.
const DSA1024_P: &str = "B10B8F96A080E01DDE92DE5EAE5D54EC52C99FBCFB06A3C6\
    9A6A9DCA52D23B616073E28675A23D189838EF1E2EE652C0\
    13ECB4AEA906112324975C3CD49B83BFACCBDD7D90C4BD70\
    98488E9C219A73724EFFD6FAE5644738FAA31A4FF55BCCC0\
    A151AF5F0DC8B4BD45BF37DF365C1A65E68CFDA76D4DA708\
    DF1FB2BC2E4A4371";
const DSA1024_G: &str = "A4D1CBD5C3FD34126765A442EFB99905F8104DD258AC507F\
    D6406CFF14266D31266FEA1E5C41564B777E690F5504F213\
    160217B4B01B886A5E91547F9E2749F4D7FBD7D3B9A92EE1\
    909D0D2263F80A76A6A24C087A091F531DBF0A0169B6A28A\
    D662A4D18E73AFA32D779D5918D08BC8858F4DCEF97C2A24\
    855E6EEB22B3B2E5";
const DSA1024_Q: &str = "F518AA8781A8DF278ABA4E7D64B7CB9D49462353";

/// RFC 5114 §2.3, 2048-bit MODP group with 256-bit prime-order subgroup.
const DSA2048_P: &str = "87A8E61DB4B6663CFFBBD19C651959998CEEF608660DD0F2\
    5D2CEED4435E3B00E00DF8F1D61957D4FAF7DF4561B2AA30\
    16C3D91134096FAA3BF4296D830E9A7C209E0C6497517ABD\
    5A8A9D306BCF67ED91F9E6725B4758C022E0B1EF4275BF7B\
    6C5BFC11D45F9088B941F54EB1E59BB8BC39A0BF12307F5C\
    4FDB70C581B23F76B63ACAE1CAA6B7902D52526735488A0E\
    F13C6D9A51BFA4AB3AD8347796524D8EF6A167B5A41825D9\
    67E144E5140564251CCACB83E6B486F6B3CA3F7971506026\
    C0B857F689962856DED4010ABD0BE621C3A3960A54E710C3\
    75F26375D7014103A4B54330C198AF126116D2276E11715F\
    693877FAD7EF09CADB094AE91E1A1597";
const DSA2048_G: &str = "3FB32C9B73134D0B2E77506660EDBD484CA7B18F21EF2054\
    07F4793A1A0BA12510DBC15077BE463FFF4FED4AAC0BB555\
    BE3A6C1B0C6B47B1BC3773BF7E8C6F62901228F8C28CBB18\
    A55AE31341000A650196F931C77A57F2DDF463E5E9EC144B\
    777DE62AAAB8A8628AC376D282D6ED3864E67982428EBC83\
    1D14348F6F2F9193B5045AF2767164E1DFC967C1FB3F2E55\
    A4BD1BFFE83B9C80D052B985D182EA0ADB2A3B7313D3FE14\
    C8484B1E052588B9B7D2BBD2DF016199ECD06E1557CD0915\
    B3353BBB64E0EC377FD028370DF92B52C7891428CDC67EB6\
    184B523D1DB246C32F63078490F00EF8D647D148D4795451\
    5E2327CFEF98C582664B4C0F6CC41659";
const DSA2048_Q: &str = "8CF83642A709A097B447997640129DA299B1A47D1EB3750BA308B0FE64F5FBD3";

/// The finite-field groups' operations on canonical byte strings (inputs already validated).
pub(super) trait FfOps: Sync {
    fn generator(&self) -> Vec<u8>;
    fn one(&self) -> Vec<u8>;
    fn order(&self) -> Vec<u8>;
    fn modulus(&self) -> Vec<u8>;
    fn random_scalar(&self, rng: &mut dyn CryptoRng) -> Zeroizing<Vec<u8>>;
    fn scalar_from_u64(&self, n: u64) -> Zeroizing<Vec<u8>>;
    fn scalar_in_range(&self, bytes: &[u8]) -> bool;
    fn is_member(&self, bytes: &[u8]) -> bool;
    fn exp(&self, base: &[u8], k: &[u8]) -> Vec<u8>;
    fn mul(&self, a: &[u8], b: &[u8]) -> Vec<u8>;
    fn element_invert(&self, a: &[u8]) -> Vec<u8>;
    fn scalar_op(&self, a: &[u8], b: &[u8], op: ScalarOp) -> Zeroizing<Vec<u8>>;
    fn scalar_invert(&self, a: &[u8]) -> Zeroizing<Vec<u8>>;
    fn reduce_wide(&self, wide: &[u8]) -> Zeroizing<Vec<u8>>;
    fn element_to_scalar(&self, e: &[u8]) -> Zeroizing<Vec<u8>>;
}

/// p, q, g of one finite-field group, with their Montgomery parameters, in `L` limbs.
struct FfGroup<const L: usize> {
    p: Uint<L>,
    q: Uint<L>,
    g: Uint<L>,
    q_nonzero: NonZero<Uint<L>>,
    p_params: DynResidueParams<L>,
    q_params: DynResidueParams<L>,
    p_len: usize,
    q_len: usize,
    q_bits: usize,
}

/// The parameters of a finite-field group (`None` for Ristretto255).
pub(super) fn ff(id: GroupId) -> Option<&'static dyn FfOps> {
    static MODP2048: OnceLock<FfGroup<{ U2048::LIMBS }>> = OnceLock::new();
    static DSA1024: OnceLock<FfGroup<{ U1024::LIMBS }>> = OnceLock::new();
    static DSA2048: OnceLock<FfGroup<{ U2048::LIMBS }>> = OnceLock::new();
    match id {
        GroupId::Modp2048 => Some(MODP2048.get_or_init(|| {
            let p = parse_hex::<{ U2048::LIMBS }>(MODP2048_P);
            // q = (p − 1)/2; p is odd, so this is p >> 1.
            let q = p.shr_vartime(1);
            FfGroup::new(p, q, Uint::from_u8(2), 256, 256)
        })),
        GroupId::Dsa1024_160 => Some(DSA1024.get_or_init(|| {
            FfGroup::new(
                parse_hex(DSA1024_P),
                parse_hex(DSA1024_Q),
                parse_hex(DSA1024_G),
                128,
                20,
            )
        })),
        GroupId::Dsa2048_256 => Some(DSA2048.get_or_init(|| {
            FfGroup::new(
                parse_hex(DSA2048_P),
                parse_hex(DSA2048_Q),
                parse_hex(DSA2048_G),
                256,
                32,
            )
        })),
        GroupId::Ristretto255 => None,
    }
}

/// Parses one of the constant hex strings above (whitespace ignored).
fn parse_hex<const L: usize>(hex: &str) -> Uint<L> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            // The constants are fixed hex, checked by the tests against vectors/crypto.
            _ => 0,
        })
        .collect();
    let bytes: Vec<u8> = digits
        .rchunks(2)
        .rev()
        .map(|c| c.iter().fold(0u8, |acc, d| (acc << 4) | d))
        .collect();
    uint_from_be(&bytes)
}

/// A big-endian byte string (at most `L` limbs long) as an integer; longer input is truncated to
/// its low-order bytes, which callers never pass.
pub(super) fn uint_from_be<const L: usize>(bytes: &[u8]) -> Uint<L> {
    let width = L * Limb::BYTES;
    let mut buf = Zeroizing::new(vec![0u8; width]);
    let take = bytes.len().min(width);
    buf[width - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    Uint::from_be_slice(&buf)
}

/// The low `len` bytes of `x`, big-endian.
fn uint_to_be<const L: usize>(x: &Uint<L>, len: usize) -> Vec<u8> {
    let mut full = Vec::with_capacity(L * Limb::BYTES);
    for word in x.as_words().iter().rev() {
        full.extend_from_slice(&word.to_be_bytes());
    }
    let skip = full.len().saturating_sub(len);
    let out = full[skip..].to_vec();
    full.zeroize();
    out
}

impl<const L: usize> FfGroup<L> {
    fn new(p: Uint<L>, q: Uint<L>, g: Uint<L>, p_len: usize, q_len: usize) -> Self {
        // q is a nonzero constant; `NonZero::new` returns a `CtOption`, and the fallback is never
        // taken (the tests check q's value).
        let q_nonzero = Option::<NonZero<Uint<L>>>::from(NonZero::new(q))
            .unwrap_or_else(|| NonZero::<Uint<L>>::from_u8(core::num::NonZeroU8::MIN));
        Self {
            p,
            q,
            g,
            q_nonzero,
            p_params: DynResidueParams::new(&p),
            q_params: DynResidueParams::new(&q),
            p_len,
            q_len,
            q_bits: q.bits(),
        }
    }

    fn elem(&self, bytes: &[u8]) -> DynResidue<L> {
        DynResidue::new(&uint_from_be(bytes), self.p_params)
    }

    fn scal(&self, bytes: &[u8]) -> DynResidue<L> {
        DynResidue::new(&uint_from_be(bytes), self.q_params)
    }

    fn elem_out(&self, x: &DynResidue<L>) -> Vec<u8> {
        uint_to_be(&x.retrieve(), self.p_len)
    }

    fn scal_out(&self, x: &DynResidue<L>) -> Zeroizing<Vec<u8>> {
        let mut v = x.retrieve();
        let out = Zeroizing::new(uint_to_be(&v, self.q_len));
        v.zeroize();
        out
    }
}

impl<const L: usize> FfOps for FfGroup<L> {
    fn generator(&self) -> Vec<u8> {
        uint_to_be(&self.g, self.p_len)
    }

    fn one(&self) -> Vec<u8> {
        uint_to_be(&Uint::<L>::ONE, self.p_len)
    }

    fn order(&self) -> Vec<u8> {
        uint_to_be(&self.q, self.q_len)
    }

    fn modulus(&self) -> Vec<u8> {
        uint_to_be(&self.p, self.p_len)
    }

    fn random_scalar(&self, rng: &mut dyn CryptoRng) -> Zeroizing<Vec<u8>> {
        let mut rng = rng;
        loop {
            // Rejection sampling below q (crypto-bigint's `random_mod`).
            let mut x = Uint::<L>::random_mod(&mut rng, &self.q_nonzero);
            let nonzero = !bool::from(x.is_zero());
            let out = Zeroizing::new(uint_to_be(&x, self.q_len));
            x.zeroize();
            if nonzero {
                return out;
            }
        }
    }

    fn scalar_from_u64(&self, n: u64) -> Zeroizing<Vec<u8>> {
        self.scal_out(&DynResidue::new(&Uint::from_u64(n), self.q_params))
    }

    fn scalar_in_range(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.q_len && uint_from_be::<L>(bytes) < self.q
    }

    fn is_member(&self, bytes: &[u8]) -> bool {
        if bytes.len() != self.p_len {
            return false;
        }
        let x = uint_from_be::<L>(bytes);
        if bool::from(x.is_zero()) || x >= self.p {
            return false;
        }
        // x^q = 1: x lies in the subgroup of prime order q.
        let r = DynResidue::new(&x, self.p_params).pow_bounded_exp(&self.q, self.q_bits);
        r.retrieve() == Uint::ONE
    }

    fn exp(&self, base: &[u8], k: &[u8]) -> Vec<u8> {
        let mut k = uint_from_be::<L>(k);
        // Constant time in k: the loop runs over q's (public) bit length.
        let r = self.elem(base).pow_bounded_exp(&k, self.q_bits);
        k.zeroize();
        self.elem_out(&r)
    }

    fn mul(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        self.elem_out(&(self.elem(a) * self.elem(b)))
    }

    fn element_invert(&self, a: &[u8]) -> Vec<u8> {
        // a is a nonzero residue mod the prime p, so it is invertible.
        let (inv, _) = self.elem(a).invert();
        self.elem_out(&inv)
    }

    fn scalar_op(&self, a: &[u8], b: &[u8], op: ScalarOp) -> Zeroizing<Vec<u8>> {
        let (a, b) = (self.scal(a), self.scal(b));
        let r = match op {
            ScalarOp::Add => a + b,
            ScalarOp::Sub => a - b,
            ScalarOp::Mul => a * b,
        };
        self.scal_out(&r)
    }

    fn scalar_invert(&self, a: &[u8]) -> Zeroizing<Vec<u8>> {
        // Fermat: a^(q−2) mod the prime q, constant time in a.
        let q_minus_2 = self.q.wrapping_sub(&Uint::from_u8(2));
        self.scal_out(&self.scal(a).pow_bounded_exp(&q_minus_2, self.q_bits))
    }

    fn reduce_wide(&self, wide: &[u8]) -> Zeroizing<Vec<u8>> {
        // wide = hi ‖ lo with lo the last 16 bytes: hi·2^128 + lo mod q. `DynResidue::new` reduces
        // any integer below 2^(64·L) (Montgomery multiplication by R² mod q).
        let split = wide.len().saturating_sub(16);
        let hi = self.scal(&wide[..split]);
        let lo = self.scal(&wide[split..]);
        let shift = DynResidue::new(&Uint::<L>::ONE.shl_vartime(128), self.q_params);
        self.scal_out(&(hi * shift + lo))
    }

    fn element_to_scalar(&self, e: &[u8]) -> Zeroizing<Vec<u8>> {
        self.scal_out(&self.scal(e))
    }
}
