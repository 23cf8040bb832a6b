//! Arbitrary bytes into every decoder of on-disk bytes (requirement A14): each must return,
//! never panic, hang, or allocate without bound. The first byte selects the decoder.

use diskcache::fuzz_decoders;

/// Number of decoders the selector byte chooses from.
pub const DECODERS: u8 = 5;

/// Runs the decoder that `data[0]` selects on the rest of `data`.
pub fn run(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % DECODERS {
        0 => fuzz_decoders::meta(bytes),
        1 => fuzz_decoders::segment(bytes),
        2 => fuzz_decoders::node(bytes),
        3 => fuzz_decoders::key(bytes),
        _ => fuzz_decoders::record(bytes),
    }
}
