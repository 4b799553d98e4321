using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Peft.Hosting.Tests;

/// <summary>TensorBoard event files, loss.csv and the loss plot of a hosted run; the console progress line.</summary>
public sealed class CurvesTests : IDisposable
{
    private readonly string _output = Path.Combine(Path.GetTempPath(), "peft-curves-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        Environment.ExitCode = 0;
        if (Directory.Exists(_output)) Directory.Delete(_output, recursive: true);
    }

    private async Task<TrainingRunStatus> Train(Dictionary<string, string?>? settings = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["PeftTraining:OutputDirectory"] = _output,
            ["PeftTraining:TotalSteps"] = "12",
            ["PeftTraining:LearningRate"] = "0.01",
            ["PeftTraining:WarmupSteps"] = "2",
            ["PeftTraining:CheckpointEvery"] = "5",
            ["PeftTraining:Seed"] = "5",
            ["PeftTraining:ConsoleProgress"] = "Log",
        });
        builder.Configuration.AddInMemoryCollection(settings ?? new());
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(new TestJobSettings());
        builder.AddPeftTraining<TestJob>();
        using var host = builder.Build();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await host.StartAsync(timeout.Token);
        await host.WaitForShutdownAsync(timeout.Token);
        return host.Services.GetServices<IHostedService>().OfType<PeftTrainingService<TestJob>>().Single().Result!;
    }

    private static List<(int Step, double Loss, double Lr, double GradNorm)> History(string output) =>
        File.ReadAllLines(Path.Combine(output, "loss.csv")).Skip(1).Select(l => l.Split(','))
            .Select(c => (int.Parse(c[0], CultureInfo.InvariantCulture), double.Parse(c[1], CultureInfo.InvariantCulture),
                double.Parse(c[2], CultureInfo.InvariantCulture), double.Parse(c[3], CultureInfo.InvariantCulture)))
            .ToList();

    private static int PolylinePoints(XDocument svg, string id) =>
        svg.Descendants().Single(e => e.Name.LocalName == "polyline" && (string?)e.Attribute("id") == id)
            .Attribute("points")!.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;

    [Fact]
    public async Task A_run_writes_tensorboard_scalars_for_every_step_matching_the_logged_losses()
    {
        var result = await Train();
        Assert.Equal(TrainingRunState.Completed, result.State);

        var history = History(_output);
        Assert.Equal(Enumerable.Range(1, 12), history.Select(h => h.Step));
        Assert.Equal(result.LastLoss, history[^1].Loss);

        string file = Assert.Single(Directory.GetFiles(Path.Combine(_output, "tensorboard"), "events.out.tfevents.*"));
        var (versions, scalars) = TensorBoardEvents.Read(file);
        Assert.Equal(new[] { "brain.Event:2" }, versions);
        foreach (var (tag, pick) in new (string, Func<(int Step, double Loss, double Lr, double GradNorm), double>)[]
                 {
                     ("train/loss", h => h.Loss), ("train/learning_rate", h => h.Lr), ("train/grad_norm", h => h.GradNorm),
                 })
        {
            var series = scalars.Where(s => s.Tag == tag).ToList();
            Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), series.Select(s => s.Step));
            Assert.Equal(history.Select(h => (float)pick(h)), series.Select(s => s.Value));
        }

        // Wall times are seconds since 1970 (TensorBoard's unit), from this run.
        double now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        Assert.All(scalars, s => Assert.InRange(s.WallTime, now - 600, now + 5));
        Assert.True(history[0].Lr < history[2].Lr); // warmup
    }

    [Fact]
    public async Task The_loss_plot_has_one_point_per_logged_step_axes_and_labels()
    {
        var result = await Train();

        string svgText = File.ReadAllText(Path.Combine(_output, "loss.svg"));
        var svg = XDocument.Parse(svgText); // well-formed XML
        Assert.Equal(12, PolylinePoints(svg, "loss"));
        Assert.Equal(12, PolylinePoints(svg, "loss-smoothed"));
        var texts = svg.Descendants().Where(e => e.Name.LocalName == "text" && e.Attribute("id") is not null).ToDictionary(e => (string)e.Attribute("id")!, e => e.Value);
        Assert.Equal("step", texts["x-label"]);
        Assert.Equal("loss", texts["y-label"]);
        Assert.Contains("TestJob: loss (completed at step 12/12)", svgText, StringComparison.Ordinal);
        Assert.Contains(result.LastLoss!.Value.ToString("G5", CultureInfo.InvariantCulture), texts["legend"], StringComparison.Ordinal);
        Assert.True(svg.Descendants().Count(e => (string?)e.Attribute("id") == "x-ticks") == 1);
        Assert.True(svg.Descendants().Single(e => (string?)e.Attribute("id") == "y-ticks").Elements().Count() >= 3);
    }

    [Fact]
    public async Task A_resumed_run_cuts_the_history_back_to_its_checkpoint_so_curve_and_plot_match_an_uninterrupted_run()
    {
        await Train();
        var uninterrupted = History(_output);

        // As if killed after step 12 was logged but before step 10's and 12's checkpoints were kept: resume from step 5.
        foreach (string dir in new[] { "step-00000010", "step-00000012" })
        {
            Directory.Delete(Path.Combine(_output, "checkpoints", dir), recursive: true);
        }

        var resumed = await Train();
        Assert.Equal(TrainingRunState.Completed, resumed.State);
        var history = History(_output);
        Assert.Equal(uninterrupted, history); // steps 1..12 once each; resume is bitwise deterministic on CPU
        Assert.Equal(12, PolylinePoints(XDocument.Load(Path.Combine(_output, "loss.svg")), "loss"));
        var files = Directory.GetFiles(Path.Combine(_output, "tensorboard"), "events.out.tfevents.*");
        Assert.Equal(2, files.Length);
        // TensorBoard: the first run's events after step 5 were dropped, so across both files every step appears once.
        var lossSteps = files.SelectMany(f => TensorBoardEvents.Read(f).Scalars).Where(e => e.Tag == "train/loss").Select(e => e.Step).OrderBy(s => s).ToList();
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), lossSteps);
    }

    [Fact]
    public void A_record_cut_short_by_a_kill_is_dropped_with_the_events_after_the_checkpoint()
    {
        string dir = Path.Combine(_output, "tb");
        Directory.CreateDirectory(dir);
        var writer = TorchSharp.torch.utils.tensorboard.SummaryWriter(dir);   // writes each event through to the file
        for (int step = 1; step <= 6; step++) writer.add_scalar("train/loss", step / 10f, step);
        string file = Directory.GetFiles(dir, "events.out.tfevents.*").Single();
        byte[] bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes.AsSpan(0, bytes.Length - 7).ToArray());   // the last record loses its tail

        int dropped = Peft.Hosting.TensorBoardPurge.Purge(dir, lastKeptStep: 3);

        Assert.Equal(2, dropped);   // steps 4 and 5; step 6's cut record goes with the truncation
        var (versions, scalars) = TensorBoardEvents.Read(file);   // checks both CRCs of every record left
        Assert.Single(versions);
        Assert.Equal(new long[] { 1, 2, 3 }, scalars.Select(e => e.Step));
    }

    [Fact]
    public async Task TensorBoard_can_be_turned_off_and_a_failed_run_still_gets_its_plot()
    {
        var result = await Train(new() { ["PeftTraining:TensorBoard"] = "false" });
        Assert.Equal(TrainingRunState.Completed, result.State);
        Assert.False(Directory.Exists(Path.Combine(_output, "tensorboard")));

        Directory.Delete(_output, recursive: true);
        var settings = new TestJobSettings();
        settings.PoisonedBatches.Add(3);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["PeftTraining:OutputDirectory"] = _output, ["PeftTraining:TotalSteps"] = "12", ["PeftTraining:ConsoleProgress"] = "Log",
        });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(settings);
        builder.AddPeftTraining<TestJob>();
        using var host = builder.Build();
        await host.StartAsync();
        await host.WaitForShutdownAsync();
        string svg = File.ReadAllText(Path.Combine(_output, "loss.svg"));
        Assert.Contains("failed at step 3/12", svg, StringComparison.Ordinal);
        Assert.Equal(3, PolylinePoints(XDocument.Parse(svg), "loss"));
    }

    [Fact]
    public void The_plot_leaves_out_non_finite_losses_and_escapes_the_title()
    {
        var points = new List<(int, double)> { (1, 2.0), (2, double.NaN), (3, 1.5), (4, double.PositiveInfinity), (5, 1.0) };
        var svg = XDocument.Parse(LossPlot.RenderSvg(points, "a<b & c"));
        Assert.Equal(3, PolylinePoints(svg, "loss"));
        Assert.Contains(svg.Descendants(), e => e.Value == "a<b & c");

        var empty = LossPlot.RenderSvg(Array.Empty<(int, double)>(), "nothing");
        Assert.Contains("no finite loss was logged", empty, StringComparison.Ordinal);
        Assert.DoesNotContain("polyline", empty, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0.0, 1.0, 6, new[] { 0, 0.2, 0.4, 0.6, 0.8, 1.0 })]
    [InlineData(0.37, 2.91, 6, new[] { 0, 0.5, 1, 1.5, 2, 2.5, 3 })]
    [InlineData(0.0, 300.0, 8, new[] { 0.0, 50, 100, 150, 200, 250, 300 })]
    public void Plot_ticks_are_round_numbers_covering_the_range(double lo, double hi, int count, double[] expected)
    {
        Assert.Equal(expected, LossPlot.NiceTicks(lo, hi, count));
    }

    [Fact]
    public void The_progress_line_shows_step_bar_percent_loss_lr_rate_and_eta()
    {
        string line = ConsoleProgress.Format(120, 300, 0.370931, 0.009747, 2195, TimeSpan.FromSeconds(252), 120);
        Assert.Equal("step 120/300 [############------------------]  40% loss 0.3709 lr 9.75e-03 2.2k tok/s ETA 00:04:12", line);

        // Narrow console: the bar goes, the figures stay.
        string narrow = ConsoleProgress.Format(120, 300, 0.370931, 0.009747, 2195, TimeSpan.FromSeconds(252), 70);
        Assert.Equal("step 120/300  40% loss 0.3709 lr 9.75e-03 2.2k tok/s ETA 00:04:12", narrow);

        Assert.Equal("step 0/10 [------------------------------]   0% loss 1.234e-05 lr 1.00e-04 12 tok/s ETA --:--:--",
            ConsoleProgress.Format(0, 10, 1.234e-5, 1e-4, 12, null, 200));
        Assert.EndsWith("100% loss 2.0000 lr 0.00e+00 3.5M tok/s ETA 1d02:03:04",
            ConsoleProgress.Format(10, 10, 2, 0, 3.5e6, new TimeSpan(1, 2, 3, 4), 200), StringComparison.Ordinal);
        Assert.True(ConsoleProgress.Format(5, 10, 1, 1e-3, 10, TimeSpan.Zero, 30).Length <= 30);
    }

    [Fact]
    public void The_progress_line_redraws_in_place_throttled_and_always_at_the_last_step()
    {
        var writer = new StringWriter();
        var progress = new ConsoleProgress(writer, 100, TimeSpan.FromHours(1));
        progress.Update(1, 3, 1.0, 1e-3, 10, TimeSpan.FromSeconds(2));
        progress.Update(2, 3, 0.5, 1e-3, 10, TimeSpan.FromSeconds(1)); // within the redraw interval: skipped
        progress.Update(3, 3, 0.25, 1e-3, 10, TimeSpan.Zero);            // last step: drawn
        progress.End();

        string text = writer.ToString();
        var draws = Regex.Matches(text, "\r\u001b\\[2K(step [^\r]*)\r");
        Assert.Equal(new[] { "step 1/3", "step 3/3" }, draws.Select(m => m.Groups[1].Value.Split(' ')[0] + " " + m.Groups[1].Value.Split(' ')[1]));
        Assert.EndsWith("\r\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', text.TrimEnd('\n'));
    }
}
