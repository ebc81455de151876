//! A matrix read from a slice with a row stride and a column stride (a transpose swaps them).

/// `element(r, c) = data[r * row + c * col]`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub col: usize,
}

impl<'a> View<'a> {
    /// Row-major `[rows, cols]`.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row: cols,
            col: 1,
        }
    }

    /// The transpose of row-major `[rows, cols]`.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row: 1,
            col: cols,
        }
    }

    /// The same matrix transposed (row and column strides swapped).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            row: self.col,
            col: self.row,
        }
    }

    /// Whether every element of a `rows × cols` matrix lies inside the slice.
    pub fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1)
                .checked_mul(self.row)
                .zip((cols - 1).checked_mul(self.col))
                .and_then(|(a, b)| a.checked_add(b))
                .is_some_and(|last| last < self.data.len())
    }

    /// The product's contract: `a` holds `m × k`, `b` `k × n`, and `out` exactly `m × n`
    /// values; the unsafe kernels rely on it.
    ///
    /// # Panics
    /// When a shape does not fit (a caller's bug).
    pub(crate) fn assert_product(m: usize, n: usize, k: usize, a: &View, b: &View, out: usize) {
        assert!(
            a.fits(m, k) && b.fits(k, n) && out == m * n,
            "product shapes"
        );
    }

    #[inline(always)]
    pub(crate) fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.row + c * self.col]
    }

    /// The `rows × cols` matrix copied to row-major with every element passed through `f`.
    pub(crate) fn to_rows(self, rows: usize, cols: usize, f: impl Fn(f32) -> f32) -> Vec<f32> {
        (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .map(|(r, c)| f(self.at(r, c)))
            .collect()
    }
}
