//! On-the-fly compression for the copying path. Runs on the blocking pool with
//! the reads, never on an async worker.

use std::io::{self, Write};

use crate::coding::Coding;

/// A streaming encoder that hands back whatever output each input produced.
pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `coding`, its level clamped into the coding's range.
    pub fn new(coding: Coding, level: i32) -> io::Result<Encoder> {
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
                Encoder::Br(Box::new(brotli::CompressorWriter::new(
                    Vec::new(),
                    64 * 1024,
                    level,
                    22,
                )))
            }
            Coding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                level.clamp(1, 19),
            )?),
        })
    }

    fn sink(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Feeds `input`; returns the compressed bytes produced so far.
    pub fn push(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.write_all(input)?,
            Encoder::Br(e) => e.write_all(input)?,
            Encoder::Zstd(e) => e.write_all(input)?,
        }
        Ok(std::mem::take(self.sink()))
    }

    /// Ends the stream; returns the remaining output.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Br(mut e) => {
                e.flush()?;
                Ok(e.into_inner())
            }
            Encoder::Zstd(e) => e.finish(),
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
            let mut e = Encoder::new(coding, 5).unwrap();
            let mut out = Vec::new();
            for chunk in input.chunks(65536) {
                out.extend(e.push(chunk).unwrap());
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
}
