use crate::frame::*;

use bytes::BufMut;

#[derive(Debug, Eq, PartialEq)]
pub struct Priority {
    stream_id: StreamId,
    dependency: StreamDependency,
}

#[derive(Debug, Eq, PartialEq)]
pub struct StreamDependency {
    /// The ID of the stream dependency target
    dependency_id: StreamId,

    /// The weight for the stream. The value exposed (and set) here is always in
    /// the range [0, 255], instead of [1, 256] (as defined in section 5.3.2.)
    /// so that the value fits into a `u8`.
    weight: u8,

    /// True if the stream dependency is exclusive.
    is_exclusive: bool,
}

impl Priority {
    pub fn load(head: Head, payload: &[u8]) -> Result<Self, Error> {
        let dependency = StreamDependency::load(payload)?;

        if dependency.dependency_id() == head.stream_id() {
            return Err(Error::InvalidDependencyId);
        }

        Ok(Priority {
            stream_id: head.stream_id(),
            dependency,
        })
    }
}

impl Priority {
    /// Ripcord: PRIORITY frames can be written too (RFC 9113, section 6.3), so that no frame
    /// handed to the writer is left unimplemented.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let head = Head::new(Kind::Priority, 0, self.stream_id);
        head.encode(5, dst);
        self.dependency.encode(dst);
    }
}

impl<B> From<Priority> for Frame<B> {
    fn from(src: Priority) -> Self {
        Frame::Priority(src)
    }
}

// ===== impl StreamDependency =====

impl StreamDependency {
    pub fn new(dependency_id: StreamId, weight: u8, is_exclusive: bool) -> Self {
        StreamDependency {
            dependency_id,
            weight,
            is_exclusive,
        }
    }

    pub fn load(src: &[u8]) -> Result<Self, Error> {
        if src.len() != 5 {
            return Err(Error::InvalidPayloadLength);
        }

        // Parse the stream ID and exclusive flag
        let (dependency_id, is_exclusive) = StreamId::parse(&src[..4]);

        // Read the weight
        let weight = src[4];

        Ok(StreamDependency::new(dependency_id, weight, is_exclusive))
    }

    pub fn dependency_id(&self) -> StreamId {
        self.dependency_id
    }

    /// Ripcord: the five bytes `load` reads: the exclusive flag and the dependency's
    /// 31-bit stream ID, then the weight.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let exclusive = if self.is_exclusive { 1 << 31 } else { 0 };
        dst.put_u32(u32::from(self.dependency_id) | exclusive);
        dst.put_u8(self.weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ripcord: what `encode` writes, `load` reads back.
    #[test]
    fn a_priority_frame_round_trips() {
        let dependency = StreamDependency::new(StreamId::from(3), 200, true);
        let priority = Priority {
            stream_id: StreamId::from(5),
            dependency,
        };
        let mut written = Vec::new();
        priority.encode(&mut written);
        assert_eq!(written.len(), HEADER_LEN + 5);
        let head = Head::parse(&written);
        assert_eq!(head.kind(), Kind::Priority);
        let read = Priority::load(head, &written[HEADER_LEN..]).expect("a valid frame");
        assert_eq!(read, priority);
    }
}
