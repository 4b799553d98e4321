using Peft.Checkpoints;
using System.Globalization;
using System.Text;
using Peft.Training;
using TorchSharp;

namespace Peft.Hosting;

/// <summary>
/// Records the curves of a run: TensorBoard scalars (<c>train/loss</c>, <c>train/learning_rate</c>,
/// <c>train/grad_norm</c>) in <c>tensorboard/</c> through TorchSharp's SummaryWriter, and every step in
/// <c>loss.csv</c> (step, loss, learning rate, gradient norm), from which <see cref="LossPlot"/> draws
/// <c>loss.svg</c> when the run ends. On resume the CSV and the existing TensorBoard event files are cut back to the
/// checkpoint's step (<see cref="TensorBoardPurge"/>), so the plot and TensorBoard show each step once, on the path the
/// weights actually took.
/// </summary>
internal sealed class TrainingCurves : IDisposable
{
    internal const string LossTag = "train/loss";
    internal const string LearningRateTag = "train/learning_rate";
    internal const string GradNormTag = "train/grad_norm";
    internal const string HistoryFileName = "loss.csv";
    internal const string TensorBoardDirectoryName = "tensorboard";
    private const string Header = "step,loss,learning_rate,grad_norm";

    private readonly string _historyPath;
    private readonly TorchSharp.Modules.SummaryWriter? _tensorBoard;
    private readonly StreamWriter _history;

    /// <summary>Opens the curves of the run in <paramref name="outputDirectory"/>.</summary>
    /// <param name="outputDirectory">The run's output directory.</param>
    /// <param name="resumedStep">The step the run resumed from (history after it is dropped), or null for a fresh run.</param>
    /// <param name="tensorBoard">Write TensorBoard event files.</param>
    public TrainingCurves(string outputDirectory, int? resumedStep, bool tensorBoard)
    {
        _historyPath = Path.Combine(outputDirectory, HistoryFileName);
        var kept = resumedStep is { } step ? ReadHistory(_historyPath).Where(r => r.Step <= step).ToList() : new List<Row>();
        AtomicFile.WriteAllText(_historyPath, string.Concat(kept.Select(r => r.Line).Prepend(Header).Select(l => l + Environment.NewLine)));
        _history = new StreamWriter(new FileStream(_historyPath, FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
        if (tensorBoard)
        {
            string events = Path.Combine(outputDirectory, TensorBoardDirectoryName);
            // The steps after the checkpoint are about to be trained again: drop their old events so each step shows once.
            if (resumedStep is { } from) TensorBoardPurge.Purge(events, from);
            _tensorBoard = torch.utils.tensorboard.SummaryWriter(events);
        }
    }

    /// <summary>Records one step.</summary>
    public void Add(TrainingProgress progress)
    {
        if (!progress.Skipped)
        {
            _tensorBoard?.add_scalar(LossTag, (float)progress.Loss, progress.Step);
            _tensorBoard?.add_scalar(GradNormTag, (float)progress.GradNorm, progress.Step);
        }

        _tensorBoard?.add_scalar(LearningRateTag, (float)progress.LearningRate, progress.Step);
        _history.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{progress.Step},{progress.Loss:R},{progress.LearningRate:R},{progress.GradNorm:R}"));
        _history.Flush();
    }

    /// <summary>Draws <c>loss.svg</c> from the history.</summary>
    /// <param name="title">The plot's title.</param>
    /// <returns>The SVG file's path.</returns>
    public string WritePlot(string title)
    {
        _history.Flush();
        string path = Path.Combine(Path.GetDirectoryName(_historyPath)!, LossPlot.FileName);
        LossPlot.WriteSvg(path, ReadHistory(_historyPath).Select(r => (r.Step, r.Loss)).ToList(), title);
        return path;
    }

    /// <inheritdoc />
    public void Dispose() => _history.Dispose();

    /// <summary>Reads the rows of a history file (missing file: none).</summary>
    internal static List<Row> ReadHistory(string path)
    {
        var rows = new List<Row>();
        if (!File.Exists(path))
        {
            return rows;
        }

        using var reader = new StreamReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite));
        while (reader.ReadLine() is { } line)
        {
            string[] cells = line.Split(',');
            if (cells.Length >= 2
                && int.TryParse(cells[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int step)
                && double.TryParse(cells[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double loss))
            {
                rows.Add(new Row(step, loss, line));
            }
        }

        return rows;
    }

    /// <summary>One history row.</summary>
    internal readonly record struct Row(int Step, double Loss, string Line);
}
