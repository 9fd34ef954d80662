//! The table cursor.

use std::sync::Arc;

use kv_iter::{Cursor, compare_internal_keys};

use crate::block::BlockIter;
use crate::{Result, Table};

/// A [`Cursor`] over every entry of a table, in internal-key order, both directions.
///
/// It holds an `Arc<Table>` and the current block, so it is `'static` and `Send` and
/// can live inside long-lived iterators. Errors (a damaged block, a failed read) are
/// returned by the positioning call that met them, as
/// [`kv_iter::Error::Source`] wrapping a [`crate::Error`], and leave the cursor
/// invalid; other blocks stay readable.
///
/// ```
/// use std::sync::Arc;
/// use kv_iter::{Cursor, CursorIter, InternalKey, SeqNo, ValueKind, VisibleCursor, Visibility};
/// use kv_sstable::{ReadOptions, Table, TableBuilder, TableOptions};
/// let mut b = TableBuilder::new(Vec::new(), TableOptions::new())?;
/// for (k, s, v) in [("a", 2, "a2"), ("a", 1, "a1"), ("b", 1, "b1")] {
///     b.add(InternalKey::new(k.as_bytes(), SeqNo::new(s)?, ValueKind::Put).as_bytes(), v.as_bytes())?;
/// }
/// let table = Arc::new(Table::open(b.finish()?.1, ReadOptions::new())?);
///
/// let mut c = table.cursor();
/// c.seek_to_last()?;
/// assert_eq!(c.value(), b"b1");
/// c.prev()?;
/// assert_eq!(c.value(), b"a1");
///
/// // Under kv-iter's visibility layer: the user's view at snapshot 1.
/// let visible = VisibleCursor::new(table.cursor(), SeqNo::new(1)?, Visibility::Latest);
/// let rows: Vec<_> = CursorIter::new(visible).collect::<Result<_, _>>()?;
/// assert_eq!(rows, vec![(b"a".to_vec(), b"a1".to_vec()), (b"b".to_vec(), b"b1".to_vec())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TableCursor {
    table: Arc<Table>,
    /// Index position of the current block.
    block: usize,
    iter: Option<BlockIter>,
}

impl TableCursor {
    /// An unpositioned cursor over `table`.
    pub fn new(table: Arc<Table>) -> Self {
        TableCursor {
            table,
            block: 0,
            iter: None,
        }
    }

    /// The table.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Loads block `i` (or clears the cursor past either end). The caller positions
    /// the cursor inside it next; a block already loaded is kept (a seek that lands in
    /// the current block, as reverse iteration's seeks do, reads no block).
    fn load(&mut self, i: usize) -> Result<()> {
        if i == self.block && self.iter.is_some() {
            return Ok(());
        }
        self.iter = None;
        self.block = i;
        if i < self.table.num_data_blocks() {
            let block = self.table.data_block(i)?;
            self.iter = Some(BlockIter::new(block, compare_internal_keys));
        }
        Ok(())
    }

    /// Runs a movement inside the current block, converting its error.
    fn step(
        &mut self,
        f: impl FnOnce(&mut BlockIter) -> Result<(), crate::block::BlockError>,
    ) -> Result<()> {
        if let Some(it) = self.iter.as_mut()
            && let Err(e) = f(it)
        {
            return Err(self.table.data_block_error(self.block, &e));
        }
        Ok(())
    }

    fn iter_valid(&self) -> bool {
        self.iter.as_ref().is_some_and(BlockIter::valid)
    }

    /// Moves forward over exhausted blocks to the next entry.
    fn skip_forward(&mut self) -> Result<()> {
        while self.iter.is_some() && !self.iter_valid() {
            self.load(self.block + 1)?;
            self.step(BlockIter::seek_to_first)?;
        }
        self.check_current()
    }

    /// Moves backward over exhausted blocks to the previous entry.
    fn skip_backward(&mut self) -> Result<()> {
        while self.iter.is_some() && !self.iter_valid() {
            if self.block == 0 {
                self.iter = None;
                break;
            }
            self.load(self.block - 1)?;
            self.step(BlockIter::seek_to_last)?;
        }
        self.check_current()
    }

    /// Rejects a current key that is not a valid internal key.
    fn check_current(&self) -> Result<()> {
        if let Some(it) = self.iter.as_ref().filter(|it| it.valid()) {
            self.table.check_key(self.block, it.key())?;
        }
        Ok(())
    }

    /// Runs a positioning operation; on error the cursor becomes invalid.
    fn guard(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> kv_iter::Result<()> {
        let r = f(self);
        if let Err(e) = r {
            self.iter = None;
            return Err(kv_iter::Error::source(e));
        }
        Ok(())
    }
}

impl Cursor for TableCursor {
    fn valid(&self) -> bool {
        self.iter_valid()
    }

    fn seek(&mut self, target: &[u8]) -> kv_iter::Result<()> {
        self.guard(|c| {
            let i = c.table.find_block(target);
            c.load(i)?;
            c.step(|it| it.seek(target))?;
            c.skip_forward()
        })
    }

    fn seek_to_first(&mut self) -> kv_iter::Result<()> {
        self.guard(|c| {
            c.load(0)?;
            c.step(BlockIter::seek_to_first)?;
            c.skip_forward()
        })
    }

    fn seek_to_last(&mut self) -> kv_iter::Result<()> {
        self.guard(|c| {
            let n = c.table.num_data_blocks();
            if n == 0 {
                c.iter = None;
                return Ok(());
            }
            c.load(n - 1)?;
            c.step(BlockIter::seek_to_last)?;
            c.skip_backward()
        })
    }

    fn next(&mut self) -> kv_iter::Result<()> {
        if !self.valid() {
            return Ok(());
        }
        self.guard(|c| {
            c.step(BlockIter::next)?;
            c.skip_forward()
        })
    }

    fn prev(&mut self) -> kv_iter::Result<()> {
        if !self.valid() {
            return Ok(());
        }
        self.guard(|c| {
            c.step(BlockIter::prev)?;
            c.skip_backward()
        })
    }

    fn key(&self) -> &[u8] {
        self.iter.as_ref().map_or(&[], BlockIter::key)
    }

    fn value(&self) -> &[u8] {
        self.iter.as_ref().map_or(&[], BlockIter::value)
    }
}
