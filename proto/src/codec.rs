//! The codec of every service generated here: prost's, with two differences.
//!
//! - A request that is not valid protobuf is the caller's error. prost's codec answers it
//!   `INTERNAL`, which tells a client that retrying might help and an operator that the
//!   server is at fault; it is `INVALID_ARGUMENT`, as any other malformed request.
//! - Each call's buffers start small. tonic gives every call an 8 KiB buffer to decode its
//!   request into and another to encode its answers into, and a streaming call keeps its
//!   encoding buffer, with the pages its first messages wrote, for as long as it is open:
//!   an idle flagd `EventStream` kept about 5 KiB that way. Ripcord's messages are mostly
//!   far smaller (an evaluation, an event); a larger one grows the buffer as it needs.
//!   Below 1 KiB the allocation is also one glibc serves from its per-thread cache.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Where each call's encoding and decoding buffers start. The yield threshold (how much a
/// stream's ready messages are batched into one write) stays tonic's.
const BUFFER_SIZE: usize = 512;
const YIELD_THRESHOLD: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

/// prost's codec with small buffers and decoding failures reported as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct Codec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec {
            _messages: PhantomData,
        }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = InvalidArgumentDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentDecoder {
            inner: ProstDecoder::new(buffer_settings()),
            _message: PhantomData,
        }
    }
}

/// prost's decoder, whose failures are `INVALID_ARGUMENT`. A client decodes answers with it
/// too, where the code only says which side sent the bad bytes.
#[derive(Debug)]
pub struct InvalidArgumentDecoder<U> {
    inner: ProstDecoder<U>,
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for InvalidArgumentDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(buf).map_err(|status| {
            if status.code() == Code::Internal {
                Status::invalid_argument(format!(
                    "the message is not valid protobuf: {}",
                    status.message()
                ))
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
