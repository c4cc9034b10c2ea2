//! The two engines behind one small trait, so that every workload runs the
//! same loop against both.

use std::path::Path;

pub mod workload;

/// One engine under test: one table of byte keys to byte values.
pub trait Engine: Sized {
    /// A short name for the table.
    const NAME: &'static str;
    /// Opens (or creates) the database in `dir`.
    fn open(dir: &Path) -> Self;
    /// Writes `items` in one commit; `durable` makes the commit fsync.
    fn commit(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool);
    /// Makes every earlier non-durable commit durable.
    fn sync(&mut self);
    /// Counts every entry (a full scan that touches every key and value).
    fn scan(&self) -> (usize, usize);
    /// Whatever the engine does to shrink its files after a bulk load, and
    /// its name; `None` if it has nothing to do.
    fn compact(&mut self) -> Option<&'static str>;
    /// Opens with a full integrity check (every page checksum verified),
    /// if the engine offers one.
    fn open_verified(_dir: &Path) -> Option<Self> {
        None
    }
}

/// redb: a copy-on-write B-tree in one file.
pub struct Redb {
    db: redb::Database,
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

impl Engine for Redb {
    const NAME: &'static str = "redb 5.0";

    fn open(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb::Database::create(dir.join("data.redb")).unwrap();
        Redb { db }
    }

    fn commit(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) {
        let mut tx = self.db.begin_write().unwrap();
        tx.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (k, v) in items {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }

    fn sync(&mut self) {
        // redb makes earlier non-durable commits durable with one durable
        // (possibly empty) commit.
        let tx = self.db.begin_write().unwrap();
        tx.commit().unwrap();
    }

    fn scan(&self) -> (usize, usize) {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        let mut n = 0;
        let mut bytes = 0;
        for row in t.iter().unwrap() {
            let (k, v) = row.unwrap();
            n += 1;
            bytes += k.value().len() + v.value().len();
        }
        (n, bytes)
    }

    fn open_verified(dir: &Path) -> Option<Self> {
        let db = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .create(dir.join("data.redb"))
            .unwrap();
        Some(Redb { db })
    }

    fn compact(&mut self) -> Option<&'static str> {
        while self.db.compact(redb::CompactionMode::Maximum).unwrap() {}
        Some("Database::compact(Maximum)")
    }
}

/// fjall: an LSM tree (journal, memtables, sorted tables).
pub struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Engine for Fjall {
    const NAME: &'static str = "fjall 3.1";

    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir).open().unwrap();
        let ks = db
            .keyspace("kv", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Fjall { db, ks }
    }

    fn commit(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) {
        let mut b = self.db.batch().durability(if durable {
            Some(fjall::PersistMode::SyncData)
        } else {
            None
        });
        for (k, v) in items {
            b.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        b.commit().unwrap();
    }

    fn sync(&mut self) {
        self.db.persist(fjall::PersistMode::SyncData).unwrap();
    }

    fn scan(&self) -> (usize, usize) {
        let mut n = 0;
        let mut bytes = 0;
        for g in self.ks.iter() {
            let (k, v) = g.into_inner().unwrap();
            n += 1;
            bytes += k.len() + v.len();
        }
        (n, bytes)
    }

    fn compact(&mut self) -> Option<&'static str> {
        self.ks.rotate_memtable_and_wait().unwrap();
        self.ks.major_compact().unwrap();
        Some("flush memtable + Keyspace::major_compact")
    }
}
