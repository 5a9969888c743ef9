//! On-the-fly compression for the copying path. Runs on the blocking pool with
//! the reads, never on an async worker.
//!
//! An encoder's state is the largest memory one response can hold: measured
//! here (RSS per live encoder after compressing, `cargo test --release -p
//! sluice --lib -- --ignored --nocapture encoder_memory`), from a few hundred
//! KiB (gzip, zstd 1) to tens of MiB (Brotli 7-11, zstd 12-19) for a 16 MiB
//! input. So each encoder is sized for its input where the format allows
//! (Brotli's window, zstd's pledged size), and [`Encoder::memory`] says what
//! it may hold, which the body charges to the host-wide body budget for its
//! whole life (see `budget`).

use std::io::{self, Write};

use crate::coding::Coding;

/// A streaming encoder that hands back whatever output each input produced.
pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>, usize),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>, usize),
}

/// Brotli's window for an input of `size` bytes: no larger than the input
/// (rounded up to a power of two), within the format's 16..=22 (Brotli's
/// window is `2^lgwin - 16` bytes, and its buffers follow it).
fn brotli_window(size: u64) -> u32 {
    let bits = u64::BITS - size.saturating_sub(1).leading_zeros();
    bits.clamp(16, 22)
}

/// Upper bounds of an encoder's memory, KiB, by level, for inputs of at most
/// 1 MiB and for larger ones (up to `compress-max-size`, 16 MiB by default):
/// the measured figures (see the module comment) rounded up. gzip's state
/// does not depend on the level or the input (~350 KiB).
const GZIP_KIB: usize = 512;
const BROTLI_KIB: [(usize, usize); 12] = [
    (512, 512),
    (1024, 1024),
    (4096, 10240),
    (4096, 10240),
    (4096, 24576),
    (4096, 24576),
    (4096, 32768),
    (16384, 40960),
    (20480, 45056),
    (28672, 57344),
    (24576, 57344),
    (24576, 57344),
];
/// zstd, by level 1..=19 (index 0 is level 1).
const ZSTD_KIB: [(usize, usize); 19] = [
    (1024, 1024),
    (1024, 1024),
    (2048, 4096),
    (2048, 4096),
    (2048, 4096),
    (8192, 16384),
    (8192, 16384),
    (8192, 16384),
    (8192, 16384),
    (16384, 49152),
    (16384, 49152),
    (16384, 49152),
    (16384, 73728),
    (16384, 73728),
    (16384, 73728),
    (20480, 98304),
    (20480, 98304),
    (20480, 98304),
    (20480, 98304),
];

fn sized(table: (usize, usize), input: u64) -> usize {
    (if input <= 1 << 20 { table.0 } else { table.1 }) << 10
}

impl Encoder {
    /// An encoder for `coding` over an input of exactly `size` bytes, its
    /// level clamped into the coding's range.
    pub fn new(coding: Coding, level: i32, size: u64) -> io::Result<Encoder> {
        Ok(match coding {
            Coding::Gzip => {
                let level = level.clamp(1, 9) as u32;
                Encoder::Gzip(flate2::write::GzEncoder::new(
                    Vec::new(),
                    flate2::Compression::new(level),
                ))
            }
            Coding::Br => {
                let level = level.clamp(0, 11) as u32;
                Encoder::Br(
                    Box::new(brotli::CompressorWriter::new(
                        Vec::new(),
                        64 * 1024,
                        level,
                        brotli_window(size),
                    )),
                    sized(BROTLI_KIB[level as usize], size),
                )
            }
            Coding::Zstd => {
                let level = level.clamp(1, 19);
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), level)?;
                // zstd sizes its window and tables for the input it is told
                // of (and records the size in the frame). The body feeds
                // exactly `size` bytes, or fails (a file that shrank).
                e.set_pledged_src_size(Some(size))?;
                Encoder::Zstd(e, sized(ZSTD_KIB[level as usize - 1], size))
            }
        })
    }

    /// The most memory this encoder's state may hold, bytes.
    pub fn memory(&self) -> usize {
        match self {
            Encoder::Gzip(_) => GZIP_KIB << 10,
            Encoder::Br(_, bytes) | Encoder::Zstd(_, bytes) => *bytes,
        }
    }

    fn sink(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e, _) => e.get_mut(),
            Encoder::Zstd(e, _) => e.get_mut(),
        }
    }

    /// Feeds `input` and flushes; returns the compressed bytes it produced.
    /// Flushing each input chunk keeps the output of one push within
    /// [`Encoder::output_bound`] of it (an encoder left to itself may buffer
    /// several chunks and emit them at once, which the body budget would
    /// not have charged), and sends bytes as they are compressed; it costs a
    /// few bytes per chunk.
    pub fn push(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(input)?;
                e.flush()?;
            }
            Encoder::Br(e, _) => {
                e.write_all(input)?;
                e.flush()?;
            }
            Encoder::Zstd(e, _) => {
                e.write_all(input)?;
                e.flush()?;
            }
        }
        Ok(std::mem::take(self.sink()))
    }

    /// The most output one [`push`](Encoder::push) of `input` bytes (or the
    /// finish) produces: incompressible data is stored with a few bytes of
    /// framing per block (gzip's stored blocks, Brotli's uncompressed
    /// meta-blocks, zstd's raw blocks), plus the flush's own bytes.
    pub fn output_bound(input: usize) -> usize {
        input + input / 64 + 1024
    }

    /// Ends the stream; returns the remaining output.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Br(mut e, _) => {
                e.flush()?;
                Ok(e.into_inner())
            }
            Encoder::Zstd(e, _) => e.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips() {
        let input: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let mut e = Encoder::new(coding, 5, input.len() as u64).unwrap();
            let mut out = Vec::new();
            for chunk in input.chunks(65536) {
                let pushed = e.push(chunk).unwrap();
                assert!(pushed.len() <= Encoder::output_bound(chunk.len()));
                out.extend(pushed);
            }
            out.extend(e.finish().unwrap());
            let mut back = Vec::new();
            match coding {
                Coding::Gzip => flate2::read::GzDecoder::new(&out[..])
                    .read_to_end(&mut back)
                    .unwrap(),
                Coding::Br => brotli::Decompressor::new(&out[..], 4096)
                    .read_to_end(&mut back)
                    .unwrap(),
                Coding::Zstd => zstd::stream::read::Decoder::new(&out[..])
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap(),
            };
            assert_eq!(back, input, "{coding:?}");
        }
    }

    /// What each encoder holds, measured as the process's RSS growth per
    /// live encoder after compressing an input (the figures behind the
    /// tables above). Process-wide, so run alone:
    /// `cargo test --release -p sluice --lib -- --ignored --nocapture encoder_memory`.
    #[test]
    #[ignore]
    fn encoder_memory() {
        fn rss_kib() -> usize {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = s.lines().find(|l| l.starts_with("VmRSS")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let data: Vec<u8> = (0..16u32 << 20)
            .map(|i| ((i.wrapping_mul(2_654_435_761)) >> 13) as u8 ^ (i as u8 & 7))
            .collect();
        let levels: [(Coding, &[i32]); 3] = [
            (Coding::Gzip, &[1, 6, 9]),
            (Coding::Br, &[0, 1, 2, 4, 5, 7, 9, 11]),
            (Coding::Zstd, &[1, 3, 6, 9, 12, 15, 19]),
        ];
        for (coding, levels) in levels {
            for &level in levels {
                let mut row = format!("{coding:?} {level:>2}:");
                for size in [1usize << 20, 16 << 20] {
                    let before = rss_kib();
                    let mut live = Vec::new();
                    for _ in 0..4 {
                        let mut e = Encoder::new(coding, level, size as u64).unwrap();
                        for chunk in data[..size].chunks(256 << 10) {
                            e.push(chunk).unwrap();
                        }
                        live.push(e);
                    }
                    let each = rss_kib().saturating_sub(before) / 4;
                    let bound = live[0].memory() >> 10;
                    row.push_str(&format!("  {}M: {each} KiB (bound {bound})", size >> 20));
                }
                println!("{row}");
            }
        }
    }
}
