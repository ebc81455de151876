//! The value tree a stream decodes into, with the accessors data files need (attributes,
//! class, names, dims, integer/real/string views).

/// One R object: its value and its attributes (`names`, `class`, `dim`, …) in stream order.
#[derive(Debug, Clone, PartialEq)]
pub struct RObject {
    pub value: RValue,
    pub attributes: Vec<(String, RObject)>,
}

/// The values a data file holds. `None` entries are R's `NA`.
#[derive(Debug, Clone, PartialEq)]
pub enum RValue {
    Null,
    Symbol(String),
    /// One CHARSXP (only seen inside character vectors and symbols).
    Char(Option<String>),
    Logical(Vec<Option<bool>>),
    Integer(Vec<Option<i32>>),
    /// Doubles; `NA_real_` and `NaN` are both NaN here.
    Real(Vec<f64>),
    Complex(Vec<(f64, f64)>),
    Str(Vec<Option<String>>),
    /// A generic vector (`list`, data frame columns).
    List(Vec<RObject>),
    /// A pairlist: (tag, value) cells.
    Pairlist(Vec<(Option<String>, RObject)>),
    Raw(Vec<u8>),
    /// An object read past (environment, closure, call, …), by its SEXP type number.
    Opaque(u8),
}

impl RObject {
    pub fn new(value: RValue) -> Self {
        Self {
            value,
            attributes: Vec::new(),
        }
    }

    pub fn null() -> Self {
        Self::new(RValue::Null)
    }

    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&RObject> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The `class` attribute's strings (empty when unclassed).
    pub fn class(&self) -> Vec<String> {
        self.attr("class")
            .and_then(RObject::strings)
            .map(|v| v.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    pub fn inherits(&self, class: &str) -> bool {
        self.class().iter().any(|c| c == class)
    }

    /// The `names` attribute (NA names as empty strings).
    pub fn names(&self) -> Vec<String> {
        self.attr("names")
            .and_then(RObject::strings)
            .map(|v| v.iter().map(|s| s.clone().unwrap_or_default()).collect())
            .unwrap_or_default()
    }

    /// The `dim` attribute.
    pub fn dim(&self) -> Option<Vec<usize>> {
        self.attr("dim")?
            .integers()?
            .iter()
            .map(|d| d.and_then(|d| usize::try_from(d).ok()))
            .collect()
    }

    pub fn integers(&self) -> Option<&[Option<i32>]> {
        match &self.value {
            RValue::Integer(v) => Some(v),
            _ => None,
        }
    }

    pub fn reals(&self) -> Option<&[f64]> {
        match &self.value {
            RValue::Real(v) => Some(v),
            _ => None,
        }
    }

    pub fn strings(&self) -> Option<&[Option<String>]> {
        match &self.value {
            RValue::Str(v) => Some(v),
            _ => None,
        }
    }

    pub fn logicals(&self) -> Option<&[Option<bool>]> {
        match &self.value {
            RValue::Logical(v) => Some(v),
            _ => None,
        }
    }

    /// A list's elements.
    pub fn elements(&self) -> Option<&[RObject]> {
        match &self.value {
            RValue::List(v) => Some(v),
            _ => None,
        }
    }

    /// A list (data frame) element by name.
    pub fn field(&self, name: &str) -> Option<&RObject> {
        let i = self.names().iter().position(|n| n == name)?;
        self.elements()?.get(i)
    }

    /// Number of elements of a vector or list.
    pub fn len(&self) -> usize {
        match &self.value {
            RValue::Null | RValue::Symbol(_) | RValue::Opaque(_) => 0,
            RValue::Char(_) => 1,
            RValue::Logical(v) => v.len(),
            RValue::Integer(v) => v.len(),
            RValue::Real(v) => v.len(),
            RValue::Complex(v) => v.len(),
            RValue::Str(v) => v.len(),
            RValue::List(v) => v.len(),
            RValue::Pairlist(v) => v.len(),
            RValue::Raw(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` of an atomic vector as text, the way a data frame column prints: factor
    /// codes become their level, numbers print shortest, NA is `None`.
    pub fn text_at(&self, i: usize) -> Option<String> {
        match &self.value {
            RValue::Integer(v) if self.inherits("factor") => {
                let code = v.get(i).copied().flatten()?;
                let levels = self.attr("levels")?.strings()?;
                levels.get(usize::try_from(code - 1).ok()?)?.clone()
            }
            RValue::Integer(v) => v.get(i).copied().flatten().map(|x| x.to_string()),
            RValue::Real(v) => v.get(i).filter(|x| !x.is_nan()).map(|x| format!("{x}")),
            RValue::Logical(v) => v
                .get(i)
                .copied()
                .flatten()
                .map(|b| if b { "TRUE" } else { "FALSE" }.to_string()),
            RValue::Str(v) => v.get(i).cloned().flatten(),
            _ => None,
        }
    }
}
