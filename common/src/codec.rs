//! The gRPC codec of every lnswarm service: prost's, with small starting buffers.
//!
//! tonic starts each call's encode and decode buffers at 8 KiB. Nearly all of our
//! messages (heartbeats, task updates, raft heartbeats) are under a few hundred
//! bytes, so a manager serving thousands of agents allocated 16 KiB per heartbeat
//! for nothing. The buffers still grow to fit any message (tonic's `codec_buffers`
//! pattern).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Starting size of a call's encode and decode buffers.
const BUFFER_BYTES: usize = 512;
/// tonic's default: a streaming encoder yields after this many buffered bytes.
const YIELD_THRESHOLD: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
