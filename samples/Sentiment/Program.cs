using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Peft.Data;
using Peft.Models.UseLite;
using Sentiment;
using TorchSharp;

// Compares frozen linear probe, LoRA, LoKr, prompt tuning and full fine-tuning of the Universal Sentence Encoder lite on
// npm sentiment@5.0.2's IMDb/Amazon/Yelp sentences (80/20 split, seeded). Each method runs in a child process of this
// program, so its peak resident memory (VmHWM) is its own.
//
//   dotnet run -c Release --project samples/Sentiment                        # all methods, markdown table on stdout
//   dotnet run -c Release --project samples/Sentiment -- --doc docs/sentiment.md   # also write the table into the doc
//   dotnet run -c Release --project samples/Sentiment -- --method lora --epochs 3 --lr 0.003
//   dotnet run -c Release --project samples/Sentiment -- --method lora --save out/sentiment   # PEFT adapter + head in one directory
var options = Options.Parse(args);
if (options is null)
{
    Console.Error.WriteLine("usage: Sentiment [--method probe|lora|lokr|prompt|full] [--epochs N] [--batch N] [--lr X] [--seed N] [--save DIR] [--doc PATH]");
    return 2;
}

var cache = new NpmPackageCache();
if (options.Method is FineTuningMethod method)
{
    // Child (or single-method) run: train one method, print its result as one JSON line.
    long hwmBefore = PeakRss();
    var examples = await SentimentData.LoadAsync(cache);
    var (train, test) = SentimentData.Split(examples);
    using var model = await UseLiteModel.LoadAsync(cache);
    long hwmLoaded = PeakRss();
    var settings = new SentimentSettings(options.Epochs, options.BatchSize, options.LearningRate ?? SentimentSettings.DefaultLearningRate(method), options.Seed);
    var result = SentimentExperiment.Run(model, method, train, test, settings, Console.Error, options.SaveDirectory);
    long hwmAfter = PeakRss();
    var row = new Row(result, settings, hwmBefore, hwmLoaded, hwmAfter, train.Count, test.Count);
    Console.WriteLine(JsonSerializer.Serialize(row));
    return 0;
}

// Parent: make sure both packages are in the cache (children then never download), then one child per method.
var all = await SentimentData.LoadAsync(cache);
var (trainAll, testAll) = SentimentData.Split(all);
using (await UseLiteModel.LoadAsync(cache)) { }
Console.Error.WriteLine($"{all.Count} sentences: {trainAll.Count} train, {testAll.Count} test; {torch.get_num_threads()} torch threads");
var rows = new List<Row>();
foreach (var m in Enum.GetValues<FineTuningMethod>())
{
    rows.Add(RunChild(m, options));
    var r = rows[^1];
    Console.Error.WriteLine($"{m}: accuracy {r.Result.AccuracyBefore:P1} -> {r.Result.Accuracy:P1}, {r.Result.SecondsPerEpoch:F1} s/epoch, peak {Mib(r.PeakAfter):F0} MiB");
}

string table = Table(rows, trainAll.Count, testAll.Count);
Console.WriteLine(table);
if (options.DocPath is string doc) WriteIntoDoc(doc, table);
return 0;

static Row RunChild(FineTuningMethod method, Options options)
{
    string exe = Environment.ProcessPath ?? throw new InvalidOperationException("The process path is unknown.");
    var start = new ProcessStartInfo(exe) { RedirectStandardOutput = true, UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(exe) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
    foreach (var a in new[] { "--method", method.ToString().ToLowerInvariant(), "--epochs", options.Epochs.ToString(CultureInfo.InvariantCulture),
        "--batch", options.BatchSize.ToString(CultureInfo.InvariantCulture), "--seed", options.Seed.ToString(CultureInfo.InvariantCulture) })
        start.ArgumentList.Add(a);
    if (options.LearningRate is double lr) { start.ArgumentList.Add("--lr"); start.ArgumentList.Add(lr.ToString("R", CultureInfo.InvariantCulture)); }
    if (options.SaveDirectory is string save) { start.ArgumentList.Add("--save"); start.ArgumentList.Add(Path.GetFullPath(save)); }
    using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {exe}.");
    string output = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0) throw new InvalidOperationException($"The {method} run failed with exit code {process.ExitCode}.");
    string last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
    return JsonSerializer.Deserialize<Row>(last) ?? throw new InvalidOperationException($"The {method} run printed no result.");
}

static long PeakRss()
{
    // VmHWM: the process's resident-set high-water mark (Linux); PeakWorkingSet64 elsewhere.
    const string status = "/proc/self/status";
    if (File.Exists(status))
    {
        foreach (var line in File.ReadLines(status))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
    }
    using var self = Process.GetCurrentProcess();
    return self.PeakWorkingSet64;
}

static string LoadAverage() =>
    File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

static double Mib(long bytes) => bytes / (1024.0 * 1024.0);

static string Table(IReadOnlyList<Row> rows, int train, int test)
{
    var s = new StringBuilder();
    var first = rows[0].Settings;
    s.AppendLine(CultureInfo.InvariantCulture, $"Machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, " +
        $"{System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, .NET {Environment.Version}, TorchSharp CPU, {torch.get_num_threads()} threads. " +
        $"Date: {DateTime.UtcNow:yyyy-MM-dd} (UTC). Data: {train} train / {test} test sentences. " +
        $"Load average (1, 5, 15 min) when the table was made: {LoadAverage()}. " +
        $"Settings: {first.Epochs} epoch{(first.Epochs == 1 ? "" : "s")}, batch {first.BatchSize}, seed {first.Seed}, AdamW, 10% warmup + cosine, grad-norm clip 1.");
    s.AppendLine();
    s.AppendLine("| method | held-out accuracy | before training | trainable parameters | learning rate | time per epoch | peak RSS | peak RSS growth in training | mean train loss (first / last epoch) |");
    s.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    foreach (var r in rows)
    {
        s.AppendLine(CultureInfo.InvariantCulture,
            $"| {Name(r.Result.Method)} | {r.Result.Accuracy:P1} | {r.Result.AccuracyBefore:P1} | {r.Result.TrainableParameters:N0} | {r.Settings.LearningRate:G3} | " +
            $"{r.Result.SecondsPerEpoch:F1} s | {Mib(r.PeakAfter):F0} MiB | +{Mib(r.PeakAfter - r.PeakLoaded):F0} MiB | {(r.Settings.Epochs == 1 ? r.Result.LastLoss.ToString("F3", CultureInfo.InvariantCulture) : $"{r.Result.FirstLoss:F3} / {r.Result.LastLoss:F3}")} |");
    }
    return s.ToString();
}

static string Name(FineTuningMethod m) => m switch
{
    FineTuningMethod.Probe => "frozen linear probe",
    FineTuningMethod.LoRA => "LoRA (r 4, 12 projections)",
    FineTuningMethod.LoKr => "LoKr (r 4, 12 projections)",
    FineTuningMethod.Prompt => $"prompt tuning ({UseLiteConfig.PromptTokens} virtual tokens)",
    FineTuningMethod.Full => "full fine-tuning",
    _ => m.ToString(),
};

static void WriteIntoDoc(string path, string table)
{
    const string begin = "<!-- sentiment-results:begin -->", end = "<!-- sentiment-results:end -->";
    string text = File.ReadAllText(path);
    int i = text.IndexOf(begin, StringComparison.Ordinal), j = text.IndexOf(end, StringComparison.Ordinal);
    if (i < 0 || j < i) throw new InvalidOperationException($"{path} has no {begin} ... {end} section to replace.");
    File.WriteAllText(path, text[..(i + begin.Length)] + "\n" + table + text[j..]);
    Console.Error.WriteLine($"wrote the table into {path}");
}

/// <summary>One method's result with its settings and memory high-water marks (bytes).</summary>
internal sealed record Row(SentimentResult Result, SentimentSettings Settings, long PeakStart, long PeakLoaded, long PeakAfter, int Train, int Test);

/// <summary>The command line.</summary>
internal sealed record Options(FineTuningMethod? Method, int Epochs, int BatchSize, double? LearningRate, int Seed, string? DocPath, string? SaveDirectory)
{
    public static Options? Parse(string[] args)
    {
        FineTuningMethod? method = null;
        int epochs = 1, batch = 32, seed = 7;
        double? lr = null;
        string? doc = null, save = null;
        for (int i = 0; i < args.Length; i++)
        {
            string? value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--method" when value is not null && Enum.TryParse<FineTuningMethod>(value, ignoreCase: true, out var m): method = m; i++; break;
                case "--epochs" when value is not null && int.TryParse(value, CultureInfo.InvariantCulture, out var e) && e > 0: epochs = e; i++; break;
                case "--batch" when value is not null && int.TryParse(value, CultureInfo.InvariantCulture, out var b) && b > 0: batch = b; i++; break;
                case "--seed" when value is not null && int.TryParse(value, CultureInfo.InvariantCulture, out var s): seed = s; i++; break;
                case "--lr" when value is not null && double.TryParse(value, CultureInfo.InvariantCulture, out var l) && l > 0: lr = l; i++; break;
                case "--doc" when value is not null: doc = value; i++; break;
                case "--save" when value is not null: save = value; i++; break;
                default: return null;
            }
        }
        return new Options(method, epochs, batch, lr, seed, doc, save);
    }
}
