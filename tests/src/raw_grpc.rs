//! Calling any RPC by path with a raw protobuf body, so one test can walk every
//! method the protos define without a hand-written call per method.

use bytes::{Buf, BufMut};
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
    Code, Status,
};

#[derive(Default, Clone)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Calls `path` with one request message `body` as a bidirectional stream (which
/// works for every RPC shape on the wire) and returns the status code the server
/// answered with: from the headers if it refused at once, else from the first
/// message or the end of the stream.
pub async fn call(channel: Channel, path: &str, body: Vec<u8>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        panic!("channel not ready: {e}");
    }
    let path = http::uri::PathAndQuery::try_from(path).expect("valid path");
    let request = tonic::Request::new(tokio_stream::once(body));
    let fut = grpc.streaming(request, path, RawCodec);
    match tokio::time::timeout(std::time::Duration::from_secs(10), fut).await {
        Err(_) => Code::DeadlineExceeded,
        Ok(Err(status)) => status.code(),
        Ok(Ok(response)) => {
            let mut stream = response.into_inner();
            // A server stream that stays open is an accepted call.
            match tokio::time::timeout(std::time::Duration::from_millis(500), stream.message())
                .await
            {
                Ok(Err(status)) => status.code(),
                _ => Code::Ok,
            }
        }
    }
}
