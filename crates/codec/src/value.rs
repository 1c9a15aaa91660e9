//! The value model of a series: its [`Kind`], a borrowed single value ([`ValueRef`]) and a
//! column of values of one kind ([`Values`]). Columns are typed vectors rather than a vector of
//! enums so decoding and aggregation run over plain slices.

use crate::error::{Error, Result};

/// The type of every value in one series.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Kind {
    Float,
    Int,
    UInt,
    Bool,
    Str,
}

impl Kind {
    /// Stable one-byte code used in encoded blocks (and the store's records).
    pub fn code(self) -> u8 {
        match self {
            Kind::Float => 0,
            Kind::Int => 1,
            Kind::UInt => 2,
            Kind::Bool => 3,
            Kind::Str => 4,
        }
    }

    pub fn from_code(code: u8) -> Result<Kind> {
        Ok(match code {
            0 => Kind::Float,
            1 => Kind::Int,
            2 => Kind::UInt,
            3 => Kind::Bool,
            4 => Kind::Str,
            _ => return Err(Error::Corrupt("unknown value kind")),
        })
    }
}

/// One value, borrowing its string if it has one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(&'a str),
}

impl ValueRef<'_> {
    /// The kind of this value.
    pub fn kind(&self) -> Kind {
        match self {
            ValueRef::Float(_) => Kind::Float,
            ValueRef::Int(_) => Kind::Int,
            ValueRef::UInt(_) => Kind::UInt,
            ValueRef::Bool(_) => Kind::Bool,
            ValueRef::Str(_) => Kind::Str,
        }
    }
}

/// A column of values of one kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    Float(Vec<f64>),
    Int(Vec<i64>),
    UInt(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl Values {
    /// An empty column of `kind`.
    pub fn new(kind: Kind) -> Values {
        match kind {
            Kind::Float => Values::Float(Vec::new()),
            Kind::Int => Values::Int(Vec::new()),
            Kind::UInt => Values::UInt(Vec::new()),
            Kind::Bool => Values::Bool(Vec::new()),
            Kind::Str => Values::Str(Vec::new()),
        }
    }

    /// The kind of every value in this column.
    pub fn kind(&self) -> Kind {
        match self {
            Values::Float(_) => Kind::Float,
            Values::Int(_) => Kind::Int,
            Values::UInt(_) => Kind::UInt,
            Values::Bool(_) => Kind::Bool,
            Values::Str(_) => Kind::Str,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::UInt(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty column of `kind` with room for `n` values.
    pub fn with_capacity(kind: Kind, n: usize) -> Values {
        let mut v = Values::new(kind);
        v.reserve(n);
        v
    }

    /// Makes room for `n` more values.
    pub fn reserve(&mut self, n: usize) {
        match self {
            Values::Float(v) => v.reserve(n),
            Values::Int(v) => v.reserve(n),
            Values::UInt(v) => v.reserve(n),
            Values::Bool(v) => v.reserve(n),
            Values::Str(v) => v.reserve(n),
        }
    }

    /// Appends `v`; fails if its kind differs from the column's.
    pub fn push(&mut self, v: ValueRef<'_>) -> Result<()> {
        match (self, v) {
            (Values::Float(c), ValueRef::Float(x)) => c.push(x),
            (Values::Int(c), ValueRef::Int(x)) => c.push(x),
            (Values::UInt(c), ValueRef::UInt(x)) => c.push(x),
            (Values::Bool(c), ValueRef::Bool(x)) => c.push(x),
            (Values::Str(c), ValueRef::Str(x)) => c.push(x.to_owned()),
            (this, v) => {
                return Err(Error::KindMismatch {
                    expected: this.kind(),
                    got: v.kind(),
                });
            }
        }
        Ok(())
    }

    /// The value at `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<ValueRef<'_>> {
        match self {
            Values::Float(c) => c.get(i).map(|&x| ValueRef::Float(x)),
            Values::Int(c) => c.get(i).map(|&x| ValueRef::Int(x)),
            Values::UInt(c) => c.get(i).map(|&x| ValueRef::UInt(x)),
            Values::Bool(c) => c.get(i).map(|&x| ValueRef::Bool(x)),
            Values::Str(c) => c.get(i).map(|x| ValueRef::Str(x.as_str())),
        }
    }

    /// Numeric view for aggregation: integers convert (rounding beyond 2^53), booleans are 0 or 1,
    /// strings have none.
    pub fn as_f64(&self, i: usize) -> Option<f64> {
        match self {
            Values::Float(c) => c.get(i).copied(),
            Values::Int(c) => c.get(i).map(|&x| x as f64),
            Values::UInt(c) => c.get(i).map(|&x| x as f64),
            Values::Bool(c) => c.get(i).map(|&x| if x { 1.0 } else { 0.0 }),
            Values::Str(_) => None,
        }
    }

    /// Empties the column, keeping its kind and allocation.
    pub fn clear(&mut self) {
        match self {
            Values::Float(v) => v.clear(),
            Values::Int(v) => v.clear(),
            Values::UInt(v) => v.clear(),
            Values::Bool(v) => v.clear(),
            Values::Str(v) => v.clear(),
        }
    }

    /// Clears the column and makes it hold `kind`, reusing the allocation when the kind matches.
    pub(crate) fn reset(&mut self, kind: Kind) {
        if self.kind() == kind {
            self.clear();
        } else {
            *self = Values::new(kind);
        }
    }
}
