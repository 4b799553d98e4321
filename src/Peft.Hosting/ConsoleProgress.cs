using System.Globalization;
using System.Text;

namespace Peft.Hosting;

/// <summary>How the training service shows progress on the console.</summary>
public enum ConsoleProgressMode
{
    /// <summary>A single updating line when standard output is a terminal (not redirected); log lines otherwise.</summary>
    Auto,

    /// <summary>Always the updating line (progress log lines go to the Debug level).</summary>
    Line,

    /// <summary>Always plain progress log lines (Information level, every <see cref="PeftTrainingOptions.LogEvery"/> steps).</summary>
    Log,
}

/// <summary>
/// The single updating progress line of an interactive run: redrawn in place (carriage return, erase line) at most a
/// few times a second, ended with a new line when the run ends.
/// </summary>
internal sealed class ConsoleProgress
{
    private readonly TimeSpan _redrawEvery;
    private readonly TextWriter _writer;
    private readonly int _width;
    private DateTime _lastDraw = DateTime.MinValue;
    private bool _drawn;

    /// <summary>Draws on <paramref name="writer"/> (the console's standard output), at most every <paramref name="redrawEvery"/> (default 200 ms).</summary>
    public ConsoleProgress(TextWriter writer, int width, TimeSpan? redrawEvery = null)
    {
        _redrawEvery = redrawEvery ?? TimeSpan.FromMilliseconds(200);
        _writer = writer;
        _width = width;
    }

    /// <summary>Whether <paramref name="mode"/> means the updating line for this process's console.</summary>
    public static bool UseLine(ConsoleProgressMode mode) => mode switch
    {
        ConsoleProgressMode.Line => true,
        ConsoleProgressMode.Log => false,
        _ => !Console.IsOutputRedirected,
    };

    /// <summary>The console's width, or 100 when it has none.</summary>
    public static int ConsoleWidth()
    {
        try
        {
            return Console.WindowWidth > 20 ? Console.WindowWidth : 100;
        }
        catch (IOException)
        {
            return 100;
        }
    }

    /// <summary>Redraws the line (throttled; the last step always draws).</summary>
    public void Update(int step, int totalSteps, double loss, double learningRate, double tokensPerSecond, TimeSpan? eta)
    {
        var now = DateTime.UtcNow;
        if (step < totalSteps && now - _lastDraw < _redrawEvery)
        {
            return;
        }

        _lastDraw = now;
        _writer.Write("\r\u001b[2K" + Format(step, totalSteps, loss, learningRate, tokensPerSecond, eta, _width - 1) + "\r");
        _writer.Flush();
        _drawn = true;
    }

    /// <summary>Leaves the last drawn line in place and moves below it, so following output starts on a fresh line.</summary>
    public void End()
    {
        if (_drawn)
        {
            _writer.Write('\n');
            _writer.Flush();
            _drawn = false;
        }
    }

    /// <summary>
    /// Formats the progress line: <c>step 120/300 [######--------] 40% loss 0.3709 lr 9.75e-03 2.2k tok/s ETA 00:04:12</c>.
    /// The bar shrinks (and then disappears) to keep the line within <paramref name="width"/> characters.
    /// </summary>
    internal static string Format(int step, int totalSteps, double loss, double learningRate, double tokensPerSecond, TimeSpan? eta, int width)
    {
        var ci = CultureInfo.InvariantCulture;
        double fraction = totalSteps > 0 ? Math.Clamp((double)step / totalSteps, 0, 1) : 0;
        string head = string.Create(ci, $"step {step}/{totalSteps}");
        string tail = string.Create(ci, $"{fraction * 100,3:F0}% loss {FormatLoss(loss)} lr {learningRate:0.00e+00} {FormatRate(tokensPerSecond)} tok/s ETA {FormatEta(eta)}");
        int barWidth = Math.Min(30, width - head.Length - tail.Length - 4);
        var line = new StringBuilder(head);
        if (barWidth >= 5)
        {
            int filled = (int)Math.Round(fraction * barWidth);
            line.Append(" [").Append('#', filled).Append('-', barWidth - filled).Append(']');
        }

        line.Append(' ').Append(tail);
        return line.Length > width && width > 0 ? line.ToString(0, width) : line.ToString();
    }

    private static string FormatLoss(double loss) =>
        double.IsFinite(loss) ? loss.ToString(Math.Abs(loss) >= 1e-3 || loss == 0 ? "0.0000" : "0.000e+00", CultureInfo.InvariantCulture) : loss.ToString(CultureInfo.InvariantCulture);

    private static string FormatRate(double perSecond) => perSecond switch
    {
        >= 1e6 => (perSecond / 1e6).ToString("0.0", CultureInfo.InvariantCulture) + "M",
        >= 1e3 => (perSecond / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + "k",
        _ => perSecond.ToString("0", CultureInfo.InvariantCulture),
    };

    private static string FormatEta(TimeSpan? eta) => eta is not { } e
        ? "--:--:--"
        : e.TotalHours >= 24
            ? string.Create(CultureInfo.InvariantCulture, $"{(int)e.TotalDays}d{e.Hours:00}:{e.Minutes:00}:{e.Seconds:00}")
            : string.Create(CultureInfo.InvariantCulture, $"{(int)e.TotalHours:00}:{e.Minutes:00}:{e.Seconds:00}");
}
