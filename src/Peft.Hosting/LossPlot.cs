using Peft.Checkpoints;
using System.Globalization;
using System.Security;
using System.Text;

namespace Peft.Hosting;

/// <summary>
/// Draws a loss curve as a self-contained SVG image (viewable in any browser): the loss of every logged step as a
/// line, a centred moving average over it, axes with ticks, grid lines, axis labels and a title.
/// </summary>
public static class LossPlot
{
    private const int Width = 800;
    private const int Height = 480;
    private const int Left = 80;
    private const int Right = 24;
    private const int Top = 48;
    private const int Bottom = 64;

    /// <summary>The file name the training service writes the plot to, in the output directory.</summary>
    public const string FileName = "loss.svg";

    /// <summary>Renders <paramref name="points"/> (step, loss) as an SVG document.</summary>
    /// <param name="points">The logged steps in order; non-finite losses are left out.</param>
    /// <param name="title">The title above the plot.</param>
    /// <returns>The SVG text.</returns>
    public static string RenderSvg(IReadOnlyList<(int Step, double Loss)> points, string title)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(title);
        var data = points.Where(p => double.IsFinite(p.Loss)).ToArray();
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"13\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Width / 2}\" y=\"28\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\">{Escape(title)}</text>\n");

        int plotW = Width - Left - Right;
        int plotH = Height - Top - Bottom;
        double xMin = data.Length == 0 ? 0 : Math.Min(0, data[0].Step);
        double xMax = data.Length == 0 ? 1 : Math.Max(data[^1].Step, xMin + 1);
        double yLo = data.Length == 0 ? 0 : data.Min(p => p.Loss);
        double yHi = data.Length == 0 ? 1 : data.Max(p => p.Loss);
        if (yHi - yLo < 1e-12)
        {
            yLo -= 0.5;
            yHi += 0.5;
        }

        var yTicks = NiceTicks(yLo, yHi, 6);
        var xTicks = NiceTicks(xMin, xMax, 8);
        double yMin = Math.Min(yLo, yTicks[0]);
        double yMax = Math.Max(yHi, yTicks[^1]);
        xMax = Math.Max(xMax, xTicks[^1]);
        double X(double step) => Left + ((step - xMin) / (xMax - xMin) * plotW);
        double Y(double loss) => Top + plotH - ((loss - yMin) / (yMax - yMin) * plotH);

        svg.Append("<g id=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n");
        foreach (double t in yTicks)
        {
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{Left}\" y1=\"{F(Y(t))}\" x2=\"{Left + plotW}\" y2=\"{F(Y(t))}\"/>\n");
        }

        foreach (double t in xTicks)
        {
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{F(X(t))}\" y1=\"{Top}\" x2=\"{F(X(t))}\" y2=\"{Top + plotH}\"/>\n");
        }

        svg.Append("</g>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<g id=\"axes\" stroke=\"black\" stroke-width=\"1\"><line x1=\"{Left}\" y1=\"{Top + plotH}\" x2=\"{Left + plotW}\" y2=\"{Top + plotH}\"/><line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{Top + plotH}\"/></g>\n");
        svg.Append("<g id=\"y-ticks\" text-anchor=\"end\">\n");
        foreach (double t in yTicks)
        {
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left - 6}\" y=\"{F(Y(t) + 4)}\">{t.ToString("G4", CultureInfo.InvariantCulture)}</text>\n");
        }

        svg.Append("</g>\n<g id=\"x-ticks\" text-anchor=\"middle\">\n");
        foreach (double t in xTicks)
        {
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(X(t))}\" y=\"{Top + plotH + 18}\">{t.ToString("G6", CultureInfo.InvariantCulture)}</text>\n");
        }

        svg.Append("</g>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text id=\"x-label\" x=\"{Left + (plotW / 2)}\" y=\"{Height - 18}\" text-anchor=\"middle\" font-size=\"15\">step</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text id=\"y-label\" x=\"20\" y=\"{Top + (plotH / 2)}\" text-anchor=\"middle\" font-size=\"15\" transform=\"rotate(-90 20 {Top + (plotH / 2)})\">loss</text>\n");

        if (data.Length > 0)
        {
            svg.Append("<polyline id=\"loss\" fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1.2\" points=\"");
            svg.AppendJoin(' ', data.Select(p => F(X(p.Step)) + "," + F(Y(p.Loss))));
            svg.Append("\"/>\n");
            // A centred moving average: it shows the trend without the lag of an exponential average.
            int half = Math.Max(1, data.Length / 50);
            var prefix = new double[data.Length + 1];
            for (int i = 0; i < data.Length; i++)
            {
                prefix[i + 1] = prefix[i] + data[i].Loss;
            }

            svg.Append("<polyline id=\"loss-smoothed\" fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\" points=\"");
            svg.AppendJoin(' ', data.Select((p, i) =>
            {
                int from = Math.Max(0, i - half), to = Math.Min(data.Length, i + half + 1);
                return F(X(p.Step)) + "," + F(Y((prefix[to] - prefix[from]) / (to - from)));
            }));
            svg.Append("\"/>\n");
            var last = data[^1];
            svg.Append(CultureInfo.InvariantCulture, $"<text id=\"legend\" x=\"{Left + plotW - 8}\" y=\"{Top + 16}\" text-anchor=\"end\" fill=\"#08519c\">light: each logged step · dark: mean of {(2 * half) + 1} steps · final loss {last.Loss.ToString("G5", CultureInfo.InvariantCulture)} at step {last.Step}</text>\n");
        }

        else
        {
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left + (plotW / 2)}\" y=\"{Top + (plotH / 2)}\" text-anchor=\"middle\">no finite loss was logged</text>\n");
        }

        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>Renders the plot and writes it to <paramref name="path"/> (through a temporary file, then a rename).</summary>
    /// <param name="path">The SVG file to write.</param>
    /// <param name="points">The logged steps in order.</param>
    /// <param name="title">The title above the plot.</param>
    public static void WriteSvg(string path, IReadOnlyList<(int Step, double Loss)> points, string title)
    {
        AtomicFile.WriteAllText(path, RenderSvg(points, title));
    }

    /// <summary>About <paramref name="count"/> (at most 1.5 times as many) round tick values (1, 2, 2.5 or 5 times a power
    /// of ten apart) covering [lo, hi].</summary>
    internal static double[] NiceTicks(double lo, double hi, int count)
    {
        double raw = (hi - lo) / Math.Max(1, count - 1);
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 2.5, 5, 10 }.Select(m => m * magnitude).First(s => s >= raw * 0.75);
        double first = Math.Floor(lo / step) * step;
        double last = Math.Ceiling(hi / step) * step;
        var ticks = new List<double>();
        for (int i = 0; first + (i * step) <= last + (step * 1e-9); i++)
        {
            ticks.Add(Math.Round(first + (i * step), 12));
        }

        return ticks.ToArray();
    }

    private static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    private static string Escape(string text) => SecurityElement.Escape(text) ?? string.Empty;
}
