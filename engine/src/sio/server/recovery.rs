//! Connection state recovery: the store of missed packets, its bound, and restoring
//! a socket that reconnects in time.

use super::*;

impl Server {
    /// Looks for kept state matching the CONNECT's `pid` and `offset`; takes it if the
    /// offset is still in the store.
    pub(super) fn try_recover(&mut self, info: &ConnectInfo) -> Option<(Kept, Vec<Vec<Data>>)> {
        self.config.recovery?;
        let pid = info.auth.get("pid")?.as_str()?;
        let offset = info.auth.get("offset")?.as_str()?;
        let kept = self.kept.get(pid)?;
        if kept.nsp != info.nsp || self.sockets.contains_key(&kept.sid) {
            return None;
        }
        let index = self.store.iter().position(|p| &*p.offset == offset)?;
        let rooms: HashSet<&Room> = kept.rooms.iter().collect();
        let missed = self
            .store
            .iter()
            .skip(index + 1)
            .filter(|p| {
                p.nsp == kept.nsp
                    && (p.rooms.is_empty() || p.rooms.iter().any(|r| rooms.contains(r)))
                    && !p.except.iter().any(|r| rooms.contains(r))
            })
            .map(|p| p.messages.clone())
            .collect();
        let kept = self.kept.remove(pid)?;
        Some((kept, missed))
    }

    pub(super) fn next_offset(&mut self) -> Arc<str> {
        self.next_offset += 1;
        format!("{}-{}", self.offset_prefix, self.next_offset).into()
    }

    pub(super) fn trim_store(&mut self, now: Instant) {
        let Some(recovery) = self.config.recovery else {
            return;
        };
        while let Some(front) = self.store.front() {
            let over = self.store.len() > recovery.max_packets
                || self.store_bytes > recovery.max_bytes
                || front.at + recovery.max_disconnection_duration < now;
            if !over {
                break;
            }
            self.store_bytes -= stored_size(&front.messages);
            self.store.pop_front();
        }
    }
}

pub(super) fn stored_size(messages: &[Data]) -> usize {
    messages.iter().map(|m| m.as_bytes().len()).sum()
}
