//! Goodbye tables: per-directory hash index laid out as an implicit binary search tree.

use super::hash::hash_filename;
use super::{read_u64, PXAR_GOODBYE_TAIL_MARKER};

/// Size of one goodbye item on disk.
pub const GOODBYE_ITEM_SIZE: u64 = 24;

/// One 24-byte goodbye table item: name hash, backwards offset and byte size of a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoodbyeItem {
    /// `hash_filename(name)`, or the tail marker for the last item.
    pub hash: u64,
    /// Distance from the GOODBYE header back to the child's FILENAME (tail: to the dir ENTRY).
    pub offset: u64,
    /// Bytes of the child entry (tail: full size of the GOODBYE item).
    pub size: u64,
}

impl GoodbyeItem {
    /// Item for a child called `name`.
    pub fn new(name: &[u8], offset: u64, size: u64) -> Self {
        Self {
            hash: hash_filename(name),
            offset,
            size,
        }
    }

    /// Little-endian on-disk form.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&self.hash.to_le_bytes());
        out[8..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.size.to_le_bytes());
        out
    }

    /// Parse the on-disk form.
    pub fn from_bytes(bytes: &[u8; 24]) -> Self {
        Self {
            hash: read_u64(bytes, 0),
            offset: read_u64(bytes, 8),
            size: read_u64(bytes, 16),
        }
    }

    /// Whether this is a tail item.
    pub fn is_tail(&self) -> bool {
        self.hash == PXAR_GOODBYE_TAIL_MARKER
    }
}

/// For `n` hash-sorted items, the sorted index stored in each output slot of the search tree.
pub fn bst_permutation(n: usize) -> Vec<usize> {
    let mut out = vec![0usize; n];
    if n > 0 {
        let e = usize::BITS - 1 - n.leading_zeros();
        place(&mut out, n, 0, e, 0);
    }
    out
}

fn place(out: &mut [usize], n: usize, o: usize, e: u32, i: usize) {
    let p = 1usize << e;
    let t = p + (p >> 1) - 1;
    let m = if n > t { p - 1 } else { p - 1 - (t - n) };
    out[i] = o + m;
    if m > 0 {
        place(out, m, o, e.saturating_sub(1), 2 * i + 1);
    }
    if m + 1 < n {
        place(out, n - m - 1, o + m + 1, e.saturating_sub(1), 2 * i + 2);
    }
}

/// Sort `items` by hash and permute them into search-tree order (without the tail item).
pub fn layout_goodbye_items(mut items: Vec<GoodbyeItem>) -> Vec<GoodbyeItem> {
    items.sort_unstable_by_key(|item| item.hash);
    bst_permutation(items.len())
        .into_iter()
        .map(|k| items[k])
        .collect()
}

/// Search-tree walk: calls `visit` with the slot of every item whose hash equals `hash`, left
/// subtrees first; stops early when `visit` returns `Some`.
pub fn search_tree<T, E>(
    count: usize,
    hash: u64,
    mut hash_at: impl FnMut(usize) -> Result<u64, E>,
    mut visit: impl FnMut(usize) -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let mut pending = vec![0usize];
    while let Some(slot) = pending.pop() {
        if slot >= count {
            continue;
        }
        let slot_hash = hash_at(slot)?;
        if hash < slot_hash {
            pending.push(2 * slot + 1);
        } else if hash > slot_hash {
            pending.push(2 * slot + 2);
        } else {
            if let Some(found) = visit(slot)? {
                return Ok(Some(found));
            }
            // Equal hashes may sit in either subtree; left first.
            pending.push(2 * slot + 2);
            pending.push(2 * slot + 1);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_table_from_spec() {
        let table: &[&[usize]] = &[
            &[0],
            &[1, 0],
            &[1, 0, 2],
            &[2, 1, 3, 0],
            &[3, 1, 4, 0, 2],
            &[3, 1, 5, 0, 2, 4],
            &[3, 1, 5, 0, 2, 4, 6],
            &[4, 2, 6, 1, 3, 5, 7, 0],
            &[5, 3, 7, 1, 4, 6, 8, 0, 2],
            &[6, 3, 8, 1, 5, 7, 9, 0, 2, 4],
            &[7, 3, 9, 1, 5, 8, 10, 0, 2, 4, 6],
            &[7, 3, 10, 1, 5, 9, 11, 0, 2, 4, 6, 8],
            &[7, 3, 11, 1, 5, 9, 12, 0, 2, 4, 6, 8, 10],
            &[7, 3, 11, 1, 5, 9, 13, 0, 2, 4, 6, 8, 10, 12],
            &[7, 3, 11, 1, 5, 9, 13, 0, 2, 4, 6, 8, 10, 12, 14],
            &[8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0],
            &[9, 5, 13, 3, 7, 11, 15, 1, 4, 6, 8, 10, 12, 14, 16, 0, 2],
        ];
        assert!(bst_permutation(0).is_empty());
        for (i, expected) in table.iter().enumerate() {
            assert_eq!(bst_permutation(i + 1), *expected, "n = {}", i + 1);
        }
    }

    #[test]
    fn permutation_is_a_search_tree_for_many_sizes() {
        for n in 1..600 {
            let perm = bst_permutation(n);
            let mut seen = vec![false; n];
            for &k in &perm {
                assert!(!seen[k], "n = {n}: index {k} twice");
                seen[k] = true;
            }
            for slot in 0..n {
                if 2 * slot + 1 < n {
                    assert!(perm[2 * slot + 1] < perm[slot]);
                }
                if 2 * slot + 2 < n {
                    assert!(perm[2 * slot + 2] > perm[slot]);
                }
            }
        }
    }

    #[test]
    fn seven_entry_example_layout() {
        // (name, FILENAME offset, size) from the spec's n = 7 example, GOODBYE at 745.
        let children: &[(&[u8], u64, u64)] = &[
            (b"alpha", 56, 99),
            (b"beta", 155, 97),
            (b"delta", 252, 99),
            (b"epsilon", 351, 103),
            (b"eta", 454, 95),
            (b"gamma", 549, 99),
            (b"zeta", 648, 97),
        ];
        let items = children
            .iter()
            .map(|(name, start, size)| GoodbyeItem::new(name, 745 - start, *size))
            .collect();
        let laid_out: Vec<(u64, u64, u64)> = layout_goodbye_items(items)
            .iter()
            .map(|i| (i.hash, i.offset, i.size))
            .collect();
        assert_eq!(
            laid_out,
            vec![
                (0x6b177759641ff3a2, 394, 103),
                (0x383f061fd51eaed8, 590, 97),
                (0xa226eba48081583c, 97, 97),
                (0x1def65733784215a, 196, 99),
                (0x3e36a5cf02e52d50, 493, 99),
                (0x9b9051e6062ccca4, 291, 95),
                (0xc7e855bd7e1aa5b1, 689, 99),
            ]
        );
    }

    #[test]
    fn search_visits_every_equal_hash() {
        let hashes = [5u64, 5, 5, 1, 9, 5, 3];
        let items = hashes
            .iter()
            .enumerate()
            .map(|(i, &hash)| GoodbyeItem {
                hash,
                offset: i as u64,
                size: 0,
            })
            .collect();
        let table = layout_goodbye_items(items);
        for wanted in [0u64, 1, 2, 5] {
            let found = search_tree::<_, ()>(
                table.len(),
                5,
                |s| Ok(table[s].hash),
                |s| Ok((table[s].offset == wanted).then_some(s)),
            )
            .unwrap();
            assert_eq!(found.map(|s| table[s].offset), Some(wanted));
        }
        let mut visited = 0;
        let none = search_tree::<(), ()>(
            table.len(),
            5,
            |s| Ok(table[s].hash),
            |_| {
                visited += 1;
                Ok(None)
            },
        )
        .unwrap();
        assert_eq!((none, visited), (None, 4));
    }

    #[test]
    fn search_finds_every_item_and_rejects_missing() {
        let names: Vec<Vec<u8>> = (0..50).map(|i| format!("name{i}").into_bytes()).collect();
        let items = names
            .iter()
            .enumerate()
            .map(|(i, n)| GoodbyeItem::new(n, i as u64, 0))
            .collect();
        let table = layout_goodbye_items(items);
        for (i, name) in names.iter().enumerate() {
            let hash = hash_filename(name);
            let found = search_tree::<_, ()>(
                table.len(),
                hash,
                |s| Ok(table[s].hash),
                |s| Ok((table[s].offset == i as u64).then_some(s)),
            )
            .unwrap();
            assert!(found.is_some(), "{i}");
        }
        let missing = search_tree::<usize, ()>(
            table.len(),
            hash_filename(b"absent"),
            |s| Ok(table[s].hash),
            |s| Ok(Some(s)),
        )
        .unwrap();
        assert_eq!(missing, None);
    }
}
