//! # flowforge-plot
//!
//! PNG pictures for examples and experiments, on [plotters](https://docs.rs/plotters) with a
//! bundled font (DejaVu Sans), so plots render identically on any machine with no system fonts:
//!
//! - [`Figure`]: a grid of 2-D [`Panel`]s, each with point clouds, polylines (trajectories,
//!   curves) and heat maps;
//! - [`ImageGrid`]: a grid of grey-scale images (digits, reconstructions).
//!
//! ```no_run
//! use flowforge_plot::{Figure, Panel, Rgb};
//! let points = vec![[0.0, 0.0], [1.0, 0.5], [-0.3, 0.8]];
//! Figure::new("example")
//!     .panel(Panel::new("samples").points(&points, Rgb::BLUE, 2))
//!     .save("out/example.png")
//!     .unwrap();
//! ```
#![warn(missing_docs)]

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// What can go wrong when writing a picture.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output folder could not be created or the file could not be written.
    #[error("cannot write {path}: {reason}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// plotters failed while drawing.
    #[error("drawing {path} failed: {reason}")]
    Drawing {
        /// The file being drawn.
        path: PathBuf,
        /// plotters' message.
        reason: String,
    },
    /// The figure has nothing to draw, or invalid dimensions.
    #[error("invalid figure: {0}")]
    Invalid(&'static str),
}

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// Matplotlib's default blue.
    pub const BLUE: Rgb = Rgb(31, 119, 180);
    /// Matplotlib's default orange.
    pub const ORANGE: Rgb = Rgb(255, 127, 14);
    /// Matplotlib's default green.
    pub const GREEN: Rgb = Rgb(44, 160, 44);
    /// Matplotlib's default red.
    pub const RED: Rgb = Rgb(214, 39, 40);
    /// Matplotlib's default purple.
    pub const PURPLE: Rgb = Rgb(148, 103, 189);
    /// Grey.
    pub const GREY: Rgb = Rgb(127, 127, 127);
    /// Black.
    pub const BLACK: Rgb = Rgb(0, 0, 0);

    /// The `i`-th colour of a ten-colour categorical palette (matplotlib's tab10).
    pub fn palette(i: usize) -> Rgb {
        const TAB10: [Rgb; 10] = [
            Rgb(31, 119, 180),
            Rgb(255, 127, 14),
            Rgb(44, 160, 44),
            Rgb(214, 39, 40),
            Rgb(148, 103, 189),
            Rgb(140, 86, 75),
            Rgb(227, 119, 194),
            Rgb(127, 127, 127),
            Rgb(188, 189, 34),
            Rgb(23, 190, 207),
        ];
        TAB10[i % 10]
    }

    /// A perceptually ordered colour for `v ∈ [0, 1]` (a viridis approximation), for heat maps.
    pub fn viridis(v: f64) -> Rgb {
        const STOPS: [(f64, f64, f64); 5] = [
            (68.0, 1.0, 84.0),
            (59.0, 82.0, 139.0),
            (33.0, 145.0, 140.0),
            (94.0, 201.0, 98.0),
            (253.0, 231.0, 37.0),
        ];
        let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
        let x = v * (STOPS.len() - 1) as f64;
        let i = (x.floor() as usize).min(STOPS.len() - 2);
        let f = x - i as f64;
        let lerp = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
        let (a, b) = (STOPS[i], STOPS[i + 1]);
        Rgb(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
    }

    fn rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// One layer of a panel.
#[derive(Debug, Clone)]
enum Layer {
    Points {
        points: Vec<[f64; 2]>,
        color: Rgb,
        radius: u32,
        opacity: f64,
    },
    Lines {
        lines: Vec<Vec<[f64; 2]>>,
        color: Rgb,
        width: u32,
        opacity: f64,
    },
    Heatmap {
        values: Vec<Vec<f64>>,
        x_range: (f64, f64),
        y_range: (f64, f64),
    },
}

/// One chart of a [`Figure`]: a title, axis ranges and layers drawn in order.
#[derive(Debug, Clone)]
pub struct Panel {
    title: String,
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
    x_label: Option<String>,
    y_label: Option<String>,
    layers: Vec<Layer>,
}

impl Panel {
    /// An empty panel titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x_range: None,
            y_range: None,
            x_label: None,
            y_label: None,
            layers: Vec::new(),
        }
    }

    /// Fix the axis ranges (otherwise they fit the data with a 5% margin).
    pub fn range(mut self, x: (f64, f64), y: (f64, f64)) -> Self {
        self.x_range = Some(x);
        self.y_range = Some(y);
        self
    }

    /// Axis labels.
    pub fn labels(mut self, x: impl Into<String>, y: impl Into<String>) -> Self {
        self.x_label = Some(x.into());
        self.y_label = Some(y.into());
        self
    }

    /// A point cloud (opaque dots of `radius` pixels).
    pub fn points(self, points: &[[f64; 2]], color: Rgb, radius: u32) -> Self {
        self.points_with_opacity(points, color, radius, 0.6)
    }

    /// A point cloud with a given opacity in [0, 1].
    pub fn points_with_opacity(mut self, points: &[[f64; 2]], color: Rgb, radius: u32, opacity: f64) -> Self {
        self.layers.push(Layer::Points {
            points: points.to_vec(),
            color,
            radius,
            opacity,
        });
        self
    }

    /// Polylines (trajectories, curves).
    pub fn lines(mut self, lines: &[Vec<[f64; 2]>], color: Rgb, width: u32, opacity: f64) -> Self {
        self.layers.push(Layer::Lines {
            lines: lines.to_vec(),
            color,
            width,
            opacity,
        });
        self
    }

    /// A heat map of `values[row][col]` over the rectangle `x_range × y_range` (row 0 at the
    /// bottom), coloured by [`Rgb::viridis`] after scaling to the values' own min–max range.
    pub fn heatmap(mut self, values: Vec<Vec<f64>>, x_range: (f64, f64), y_range: (f64, f64)) -> Self {
        self.layers.push(Layer::Heatmap {
            values,
            x_range,
            y_range,
        });
        self
    }

    fn data_bounds(&self) -> Option<((f64, f64), (f64, f64))> {
        let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
        let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
        let mut grow = |p: &[f64; 2]| {
            if p[0].is_finite() && p[1].is_finite() {
                xs = (xs.0.min(p[0]), xs.1.max(p[0]));
                ys = (ys.0.min(p[1]), ys.1.max(p[1]));
            }
        };
        for layer in &self.layers {
            match layer {
                Layer::Points { points, .. } => points.iter().for_each(&mut grow),
                Layer::Lines { lines, .. } => lines.iter().flatten().for_each(&mut grow),
                Layer::Heatmap { x_range, y_range, .. } => {
                    grow(&[x_range.0, y_range.0]);
                    grow(&[x_range.1, y_range.1]);
                }
            }
        }
        if xs.0 > xs.1 {
            return None;
        }
        let pad = |(lo, hi): (f64, f64)| {
            let margin = ((hi - lo) * 0.05).max(1e-6);
            (lo - margin, hi + margin)
        };
        Some((pad(xs), pad(ys)))
    }
}

/// A grid of panels written to one PNG.
#[derive(Debug, Clone)]
pub struct Figure {
    title: String,
    panels: Vec<Panel>,
    columns: Option<usize>,
    panel_size: (u32, u32),
}

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        // The bundled font is valid; if registration failed, text would simply not render.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

fn create_parent(path: &Path) -> Result<(), PlotError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| PlotError::Io {
            path: parent.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    // Fail early, with the OS's reason, if the file cannot be created (plotters only writes at
    // the end and reports a less helpful error).
    std::fs::File::create(path).map_err(|e| PlotError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(())
}

impl Figure {
    /// An empty figure; `title` is drawn above the panels.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            panels: Vec::new(),
            columns: None,
            panel_size: (320, 320),
        }
    }

    /// Add a panel (panels fill the grid row by row).
    pub fn panel(mut self, panel: Panel) -> Self {
        self.panels.push(panel);
        self
    }

    /// Number of columns (default: all panels in one row, at most 6).
    pub fn columns(mut self, columns: usize) -> Self {
        self.columns = Some(columns.max(1));
        self
    }

    /// Size of each panel in pixels (default 320 × 320).
    pub fn panel_size(mut self, width: u32, height: u32) -> Self {
        self.panel_size = (width, height);
        self
    }

    /// Render to a PNG at `path`, creating its folder.
    ///
    /// # Errors
    /// [`PlotError::Io`] if the folder or file cannot be written; [`PlotError::Invalid`] for a
    /// figure without panels; [`PlotError::Drawing`] if plotters fails.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PlotError> {
        let path = path.as_ref();
        if self.panels.is_empty() {
            return Err(PlotError::Invalid("a figure needs at least one panel"));
        }
        if self.panel_size.0 < 64 || self.panel_size.1 < 64 {
            return Err(PlotError::Invalid("panels must be at least 64 × 64 pixels"));
        }
        register_font();
        create_parent(path)?;
        let columns = self.columns.unwrap_or(self.panels.len().min(6));
        let rows = self.panels.len().div_ceil(columns);
        let title_height = 36;
        let size = (
            self.panel_size.0 * columns as u32,
            self.panel_size.1 * rows as u32 + title_height,
        );
        let drawing = |reason: String| PlotError::Drawing {
            path: path.to_path_buf(),
            reason,
        };
        let root = BitMapBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| drawing(e.to_string()))?;
        let (header, body) = root.split_vertically(title_height);
        header
            .titled(&self.title, ("sans-serif", 22))
            .map_err(|e| drawing(e.to_string()))?;
        let areas = body.split_evenly((rows, columns));
        for (area, panel) in areas.iter().zip(&self.panels) {
            draw_panel(area, panel).map_err(drawing)?;
        }
        root.present().map_err(|e| drawing(e.to_string()))?;
        Ok(())
    }
}

fn draw_panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, panel: &Panel) -> Result<(), String> {
    let bounds = panel.data_bounds().unwrap_or(((-1.0, 1.0), (-1.0, 1.0)));
    let x = panel.x_range.unwrap_or(bounds.0);
    let y = panel.y_range.unwrap_or(bounds.1);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(6)
        .x_label_area_size(if panel.x_label.is_some() { 36 } else { 24 })
        .y_label_area_size(if panel.y_label.is_some() { 48 } else { 40 })
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(WHITE.mix(0.0))
        .x_labels(5)
        .y_labels(5)
        .label_style(("sans-serif", 11));
    if let Some(label) = &panel.x_label {
        mesh.x_desc(label.as_str());
    }
    if let Some(label) = &panel.y_label {
        mesh.y_desc(label.as_str());
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for layer in &panel.layers {
        match layer {
            Layer::Points {
                points,
                color,
                radius,
                opacity,
            } => {
                let style = color.rgb().mix(*opacity).filled();
                chart
                    .draw_series(
                        points
                            .iter()
                            .filter(|p| p[0].is_finite() && p[1].is_finite())
                            .map(|p| Circle::new((p[0], p[1]), *radius, style)),
                    )
                    .map_err(|e| e.to_string())?;
            }
            Layer::Lines {
                lines,
                color,
                width,
                opacity,
            } => {
                let style = color.rgb().mix(*opacity).stroke_width(*width);
                for line in lines {
                    chart
                        .draw_series(LineSeries::new(line.iter().map(|p| (p[0], p[1])), style))
                        .map_err(|e| e.to_string())?;
                }
            }
            Layer::Heatmap {
                values,
                x_range,
                y_range,
            } => {
                let rows = values.len();
                let cols = values.first().map_or(0, Vec::len);
                let finite = values.iter().flatten().copied().filter(|v| v.is_finite());
                let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
                let span = if hi > lo { hi - lo } else { 1.0 };
                let dx = (x_range.1 - x_range.0) / cols.max(1) as f64;
                let dy = (y_range.1 - y_range.0) / rows.max(1) as f64;
                chart
                    .draw_series(values.iter().enumerate().flat_map(|(r, row)| {
                        row.iter().enumerate().map(move |(c, &v)| {
                            let x0 = x_range.0 + c as f64 * dx;
                            let y0 = y_range.0 + r as f64 * dy;
                            Rectangle::new(
                                [(x0, y0), (x0 + dx, y0 + dy)],
                                Rgb::viridis((v - lo) / span).rgb().filled(),
                            )
                        })
                    }))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// A grid of grey-scale images, e.g. generated digits, one row per class.
#[derive(Debug, Clone)]
pub struct ImageGrid {
    images: Vec<Vec<f32>>,
    width: usize,
    height: usize,
    columns: usize,
    scale: u32,
    row_labels: Vec<String>,
    title: String,
}

impl ImageGrid {
    /// Images of `width × height` pixels (row-major, values in [0, 1]; clamped), laid out in
    /// `columns` columns.
    pub fn new(title: impl Into<String>, images: Vec<Vec<f32>>, width: usize, height: usize, columns: usize) -> Self {
        Self {
            images,
            width,
            height,
            columns: columns.max(1),
            scale: 3,
            row_labels: Vec::new(),
            title: title.into(),
        }
    }

    /// Pixels per image pixel (default 3).
    pub fn scale(mut self, scale: u32) -> Self {
        self.scale = scale.max(1);
        self
    }

    /// A label drawn left of each row.
    pub fn row_labels(mut self, labels: Vec<String>) -> Self {
        self.row_labels = labels;
        self
    }

    /// Render to a PNG at `path`, creating its folder.
    ///
    /// # Errors
    /// [`PlotError::Invalid`] if there are no images or one has the wrong number of pixels;
    /// [`PlotError::Io`] / [`PlotError::Drawing`] as for [`Figure::save`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PlotError> {
        let path = path.as_ref();
        if self.images.is_empty() || self.width == 0 || self.height == 0 {
            return Err(PlotError::Invalid("an image grid needs at least one non-empty image"));
        }
        if self.images.iter().any(|im| im.len() != self.width * self.height) {
            return Err(PlotError::Invalid("every image must have width × height pixels"));
        }
        register_font();
        create_parent(path)?;
        let rows = self.images.len().div_ceil(self.columns);
        let gap = 2u32;
        let cell_w = self.width as u32 * self.scale + gap;
        let cell_h = self.height as u32 * self.scale + gap;
        let label_w = if self.row_labels.is_empty() { 0 } else { 40 };
        let title_h = 30;
        let size = (label_w + cell_w * self.columns as u32 + gap, title_h + cell_h * rows as u32 + gap);
        let drawing = |reason: String| PlotError::Drawing {
            path: path.to_path_buf(),
            reason,
        };
        let root = BitMapBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| drawing(e.to_string()))?;
        root.draw_text(&self.title, &("sans-serif", 18).into_font().color(&BLACK), (6, 6))
            .map_err(|e| drawing(e.to_string()))?;
        for (r, label) in self.row_labels.iter().enumerate().take(rows) {
            let y = title_h + r as u32 * cell_h + cell_h / 2 - 8;
            root.draw_text(label, &("sans-serif", 16).into_font().color(&BLACK), (6, y as i32))
                .map_err(|e| drawing(e.to_string()))?;
        }
        for (i, image) in self.images.iter().enumerate() {
            let (r, c) = (i / self.columns, i % self.columns);
            let x0 = label_w + gap + c as u32 * cell_w;
            let y0 = title_h + gap + r as u32 * cell_h;
            for py in 0..self.height {
                for px in 0..self.width {
                    let v = image[py * self.width + px];
                    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
                    // Digits are drawn dark on light, as on paper.
                    let g = (255.0 * (1.0 - v)).round() as u8;
                    for sy in 0..self.scale {
                        for sx in 0..self.scale {
                            let p = ((x0 + px as u32 * self.scale + sx) as i32, (y0 + py as u32 * self.scale + sy) as i32);
                            root.draw_pixel(p, &RGBColor(g, g, g)).map_err(|e| drawing(e.to_string()))?;
                        }
                    }
                }
            }
        }
        root.present().map_err(|e| drawing(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_folder_is_a_typed_error() {
        // A path below a regular file cannot be created.
        let file = std::env::temp_dir().join(format!("flowforge-plot-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let err = Figure::new("x")
            .panel(Panel::new("p").points(&[[0.0, 0.0]], Rgb::BLUE, 2))
            .save(file.join("sub/plot.png"))
            .unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }), "{err}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn empty_figures_and_bad_images_are_rejected() {
        assert!(matches!(Figure::new("x").save("unused.png"), Err(PlotError::Invalid(_))));
        let grid = ImageGrid::new("x", vec![vec![0.0; 3]], 2, 2, 1);
        assert!(matches!(grid.save("unused.png"), Err(PlotError::Invalid(_))));
    }

    #[test]
    fn a_figure_and_an_image_grid_render_to_png() {
        let dir = std::env::temp_dir().join(format!("flowforge-plot-ok-{}", std::process::id()));
        let fig = dir.join("fig.png");
        Figure::new("test")
            .panel(Panel::new("a").points(&[[0.0, 0.0], [1.0, 1.0]], Rgb::BLUE, 2))
            .panel(Panel::new("b").lines(&[vec![[0.0, 0.0], [1.0, 2.0]]], Rgb::RED, 1, 1.0))
            .panel(Panel::new("c").heatmap(vec![vec![0.0, 1.0], vec![2.0, 3.0]], (0.0, 1.0), (0.0, 1.0)))
            .save(&fig)
            .unwrap();
        let bytes = std::fs::read(&fig).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let grid = dir.join("grid.png");
        ImageGrid::new("digits", vec![vec![0.5; 4]; 3], 2, 2, 2)
            .row_labels(vec!["0".into(), "1".into()])
            .save(&grid)
            .unwrap();
        assert_eq!(&std::fs::read(&grid).unwrap()[1..4], b"PNG");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
