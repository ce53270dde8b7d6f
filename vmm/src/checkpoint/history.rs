//! The checkpoints as a tree of page deltas. Each checkpoint keeps only the pages that
//! differ from its parent — the checkpoint the guest's memory came from when it was taken
//! (the previous one, or the one last rewound to) — and the first one (a root) keeps every
//! page that differs from zero. A page's value at a checkpoint is the newest copy on the
//! way from it to its root; a page no checkpoint on that way holds is zero.
//!
//! Rewinding from the current state (the base checkpoint plus what the guest wrote since)
//! to a target writes the pages changed since the base and the pages held by the
//! checkpoints between the base, the target and their nearest common ancestor: every
//! other page is the same in both. Deleting a checkpoint hands its pages to its children
//! (shared, not copied); the base is kept, unnumbered, until the guest leaves it.
//!
//! Generic over what else a checkpoint holds (`S`), so the page logic is tested alone.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// A page's bytes at a checkpoint; `None` is a page of zeroes (nothing kept).
pub type Page = Option<Arc<[u8]>>;

/// One checkpoint.
pub struct Node<S> {
    /// Deleted by the user but still the base of the guest's memory (kept, unnumbered).
    deleted: bool,
    parent: Option<u32>,
    /// Page number → its bytes, for the pages that differ from the parent.
    pages: BTreeMap<u64, Page>,
    /// The rest of the checkpoint (vCPUs, devices, …).
    pub state: S,
}

impl<S> Node<S> {
    /// How many pages it holds itself.
    pub fn page_count(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Bytes of page copies it holds itself (zero pages cost nothing).
    pub fn page_bytes(&self) -> u64 {
        self.pages.values().flatten().map(|p| p.len() as u64).sum()
    }
}

/// Every checkpoint of a machine, and which one its memory derives from.
pub struct History<S> {
    /// By number; numbers are never reused (gdb's checkpoints count the same way).
    nodes: BTreeMap<u32, Node<S>>,
    next: u32,
    base: Option<u32>,
}

impl<S> Default for History<S> {
    fn default() -> Self {
        Self { nodes: BTreeMap::new(), next: 1, base: None }
    }
}

impl<S> History<S> {
    /// The checkpoint the guest's memory derives from (the last one taken or rewound to),
    /// even if it was deleted since.
    pub fn base(&self) -> Option<u32> {
        self.base
    }

    /// The checkpoints the user can name, in order.
    pub fn live(&self) -> impl Iterator<Item = (u32, &Node<S>)> {
        self.nodes.iter().filter(|(_, n)| !n.deleted).map(|(&k, n)| (k, n))
    }

    /// How many checkpoints the user can name.
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// Checkpoint `n`, if it exists and was not deleted.
    pub fn get(&self, n: u32) -> Option<&Node<S>> {
        self.nodes.get(&n).filter(|node| !node.deleted)
    }

    /// The nearest checkpoint above `n` that the user can name.
    pub fn live_parent(&self, n: u32) -> Option<u32> {
        let mut at = self.nodes.get(&n)?.parent;
        while let Some(p) = at {
            let node = self.nodes.get(&p)?;
            if !node.deleted {
                return Some(p);
            }
            at = node.parent;
        }
        None
    }

    /// Adds a checkpoint whose pages differ from the base's by `pages`; it becomes the base.
    pub fn add(&mut self, pages: BTreeMap<u64, Page>, state: S) -> u32 {
        let n = self.next;
        self.next += 1;
        self.nodes.insert(n, Node { deleted: false, parent: self.base, pages, state });
        self.base = Some(n);
        self.collect();
        n
    }

    /// `n` and its ancestors, nearest first.
    fn path(&self, n: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = Some(n);
        while let Some(k) = at {
            out.push(k);
            at = self.nodes.get(&k).and_then(|node| node.parent);
        }
        out
    }

    /// The pages whose value can differ between the base and `target` (besides what the
    /// guest wrote since the base): those held by the checkpoints from either of them up
    /// to, not including, their nearest common ancestor (all the way to the roots when
    /// they have none).
    pub fn differing_pages(&self, target: u32) -> BTreeSet<u64> {
        let from = self.base.map(|b| self.path(b)).unwrap_or_default();
        let to = self.path(target);
        let common: HashSet<u32> = from.iter().copied().filter(|k| to.contains(k)).collect();
        from.iter()
            .chain(to.iter())
            .filter(|k| !common.contains(k))
            .filter_map(|k| self.nodes.get(k))
            .flat_map(|node| node.pages.keys().copied())
            .collect()
    }

    /// The bytes of page `pfn` at checkpoint `n` (`None`: zeroes).
    pub fn page_at(&self, n: u32, pfn: u64) -> Page {
        self.path(n).into_iter().find_map(|k| self.nodes.get(&k)?.pages.get(&pfn).cloned()).flatten()
    }

    /// Makes `n` the base (after a rewind to it).
    pub fn set_base(&mut self, n: u32) {
        self.base = Some(n);
        self.collect();
    }

    /// Deletes checkpoint `n`; false if there is no such checkpoint. Its pages go to its
    /// children; if it is the base it stays, unnumbered, until the guest leaves it.
    pub fn delete(&mut self, n: u32) -> bool {
        match self.nodes.get_mut(&n) {
            Some(node) if !node.deleted => node.deleted = true,
            _ => return false,
        }
        self.collect();
        true
    }

    /// Drops every deleted checkpoint that is not the base, its pages merged into its
    /// children (a child's own copy of a page wins).
    fn collect(&mut self) {
        while let Some(k) =
            self.nodes.iter().find(|(&k, node)| node.deleted && Some(k) != self.base).map(|(&k, _)| k)
        {
            let Some(gone) = self.nodes.remove(&k) else { break };
            for child in self.nodes.values_mut().filter(|c| c.parent == Some(k)) {
                for (pfn, page) in &gone.pages {
                    child.pages.entry(*pfn).or_insert_with(|| page.clone());
                }
                child.parent = gone.parent;
            }
        }
    }

    /// The bytes all checkpoints keep in page copies, each copy counted once (children
    /// share the pages of a deleted parent).
    pub fn kept_page_bytes(&self) -> u64 {
        let mut seen = HashSet::new();
        self.nodes
            .values()
            .flat_map(|node| node.pages.values().flatten())
            .filter(|p| seen.insert(Arc::as_ptr(p) as *const u8))
            .map(|p| p.len() as u64)
            .sum()
    }

    /// Every checkpoint's extra state, deleted-but-kept ones included.
    pub fn states(&self) -> impl Iterator<Item = &S> {
        self.nodes.values().map(|node| &node.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-byte "page".
    fn page(b: u8) -> Page {
        Some(Arc::from(vec![b]))
    }

    fn pages(list: &[(u64, u8)]) -> BTreeMap<u64, Page> {
        list.iter().map(|&(pfn, b)| (pfn, if b == 0 { None } else { page(b) })).collect()
    }

    fn value(h: &History<()>, n: u32, pfn: u64) -> u8 {
        h.page_at(n, pfn).map_or(0, |p| p[0])
    }

    #[test]
    fn a_page_is_the_newest_copy_on_the_way_to_the_root() {
        let mut h = History::default();
        let one = h.add(pages(&[(0, 1), (1, 1)]), ());
        let two = h.add(pages(&[(1, 2), (2, 2)]), ());
        let three = h.add(pages(&[(0, 0)]), ());
        assert_eq!((one, two, three), (1, 2, 3));
        assert_eq!([value(&h, 1, 0), value(&h, 1, 1), value(&h, 1, 2)], [1, 1, 0]);
        assert_eq!([value(&h, 2, 0), value(&h, 2, 1), value(&h, 2, 2)], [1, 2, 2]);
        assert_eq!([value(&h, 3, 0), value(&h, 3, 1), value(&h, 3, 2)], [0, 2, 2]);
        // From 3 back to 1: what 2 and 3 hold.
        assert_eq!(h.differing_pages(1), BTreeSet::from([0, 1, 2]));
        assert_eq!(h.differing_pages(3), BTreeSet::new());
        assert_eq!(h.kept_page_bytes(), 4);
    }

    #[test]
    fn after_a_rewind_new_checkpoints_branch_from_the_target() {
        let mut h = History::default();
        h.add(pages(&[(0, 1)]), ());
        h.add(pages(&[(1, 2)]), ());
        h.set_base(1);
        let branch = h.add(pages(&[(2, 4)]), ());
        assert_eq!(h.live_parent(branch), Some(1));
        // 2 and 4 share only 1: going from 4 to 2 touches what each holds.
        assert_eq!(h.differing_pages(2), BTreeSet::from([1, 2]));
        assert_eq!([value(&h, 2, 1), value(&h, 2, 2)], [2, 0]);
        assert_eq!([value(&h, branch, 1), value(&h, branch, 2)], [0, 4]);
    }

    #[test]
    fn deleting_hands_pages_to_the_children_and_keeps_the_base() {
        let mut h = History::default();
        h.add(pages(&[(0, 1), (1, 1)]), ());
        h.add(pages(&[(1, 2)]), ());
        h.add(pages(&[(2, 3)]), ());
        assert!(h.delete(1));
        assert!(!h.delete(1), "deleted already");
        assert!(!h.delete(9));
        assert!(h.get(1).is_none());
        // 2 is a root now: it holds page 0 from 1, and its own page 1.
        assert_eq!([value(&h, 2, 0), value(&h, 2, 1)], [1, 2]);
        assert_eq!(h.live_parent(3), Some(2));
        // Deleting the base (3) keeps it until the guest leaves it.
        assert!(h.delete(3));
        assert_eq!(h.base(), Some(3));
        assert_eq!(h.live().map(|(k, _)| k).collect::<Vec<_>>(), [2]);
        assert_eq!(h.differing_pages(2), BTreeSet::from([2]));
        h.set_base(2);
        assert_eq!(h.states().count(), 1, "3 went once the guest left it");
        assert_eq!(h.kept_page_bytes(), 2);
    }

    #[test]
    fn a_deleted_root_with_two_children_shares_its_copies() {
        let mut h = History::default();
        h.add(pages(&[(0, 1), (5, 5)]), ());
        h.add(pages(&[(1, 2)]), ());
        h.set_base(1);
        h.add(pages(&[(2, 3)]), ());
        let before = h.kept_page_bytes();
        h.delete(1);
        assert_eq!(h.kept_page_bytes(), before, "the root's pages are shared, not copied");
        assert_eq!([value(&h, 2, 5), value(&h, 3, 5)], [5, 5]);
        // 2 and 3 are two roots now: going from 3 to 2 writes everything either holds.
        assert_eq!(h.differing_pages(2), BTreeSet::from([0, 1, 2, 5]));
    }
}
