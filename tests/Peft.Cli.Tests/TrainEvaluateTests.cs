using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Peft.Hosting;
using Peft.Training.Checkpoints;

namespace Peft.Cli.Tests;

public sealed class TrainEvaluateTests : IDisposable
{
    private readonly TempDir _dir = new();

    public TrainEvaluateTests()
    {
        // y = x0 + x1 - x2 over 6 features, from a fixed LCG so the file is the same every time.
        var csv = new StringBuilder("a,b,c,d,e,f,y\n");
        uint state = 12345;
        float Next() => (state = state * 1664525 + 1013904223) / (float)uint.MaxValue * 2 - 1;
        for (int row = 0; row < 256; row++)
        {
            var x = Enumerable.Range(0, 6).Select(_ => Next()).ToArray();
            csv.AppendJoin(',', x.Select(v => v.ToString("R", CultureInfo.InvariantCulture)))
                .Append(',').Append((x[0] + x[1] - x[2]).ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }

        Directory.CreateDirectory(_dir["data"]);
        File.WriteAllText(_dir["data/train.csv"], csv.ToString());
        WriteConfig("appsettings.json", steps: 80);
    }

    public void Dispose() => _dir.Dispose();

    private void WriteConfig(string name, int steps, string extraTraining = "", string job = "")
    {
        File.WriteAllText(_dir[name], $$"""
        {
          "Logging": { "LogLevel": { "Default": "Warning" } },
          "PeftTraining": {
            "OutputDirectory": "run",
            "DataFile": "data/train.csv",
            "TotalSteps": {{steps}},
            "LearningRate": 0.02,
            "WarmupSteps": 5,
            "CheckpointEvery": 40,
            "LogEvery": 1000{{extraTraining}}
          },
          "Job": { "HiddenSize": 16, "BatchSize": 32{{job}} }
        }
        """);
    }

    private static double Loss(CliResult result)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        return JsonNode.Parse(result.Output)!["loss"]!.GetValue<double>();
    }

    [Fact]
    public void Train_then_evaluate_base_checkpoint_adapter_and_merged_weights()
    {
        string config = _dir["appsettings.json"];
        var train = CliRunner.Run("train", "--config", config);
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("completed: step 80/80", train.Output);
        Assert.Equal(TrainingRunState.Completed, TrainingRunStatus.Read(_dir["run"]).State);
        Assert.True(File.Exists(_dir["run/base.safetensors"]));
        string checkpoint = new CheckpointStore(_dir["run/checkpoints"]).Latest()!;
        Assert.EndsWith("step-00000080", checkpoint);

        double before = Loss(CliRunner.Run("evaluate", "--config", config, "--json"));
        double adapter = Loss(CliRunner.Run("evaluate", "--config", config, "--adapter", _dir["run/adapters/default"], "--json"));
        double fromCheckpoint = Loss(CliRunner.Run("evaluate", "--config", config, "--checkpoint", checkpoint, "--json"));
        Assert.True(adapter < 0.5 * before, $"training did not help: base loss {before}, trained {adapter}");
        Assert.Equal(adapter, fromCheckpoint, 6);

        var merge = CliRunner.Run("merge", "--base", _dir["run/base.safetensors"], "--adapter", _dir["run/adapters"], "--adapter-name", "default", "--output", _dir["merged.safetensors"]);
        Assert.True(merge.ExitCode == 0, merge.ToString());
        double merged = Loss(CliRunner.Run("evaluate", "--config", config, "--weights", _dir["merged.safetensors"], "--json"));
        Assert.Equal(adapter, merged, 5);

        var text = CliRunner.Run("evaluate", "--config", config, "--checkpoint", checkpoint);
        Assert.Equal(0, text.ExitCode);
        Assert.StartsWith("checkpoint " + checkpoint + ": loss ", text.Output);

        // A second run finds the final checkpoint and has nothing left to do; a longer schedule is refused with the path named.
        var again = CliRunner.Run("train", "--config", config);
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("completed: step 80/80", again.Output);
        var longer = CliRunner.Run("train", "--config", config, "--PeftTraining:TotalSteps=120");
        Assert.Equal(ExitCodes.Failure, longer.ExitCode);
        Assert.Contains("TotalSteps", longer.Error);
        Assert.Contains("step-00000080", longer.Error);
    }

    [Fact]
    public void Classification_reports_accuracy()
    {
        string csv = "x0,x1,x2,x3,label\n" + string.Concat(Enumerable.Range(0, 64).Select(i =>
            string.Create(CultureInfo.InvariantCulture, $"{(i % 2 == 0 ? 1 : -1)},{i % 3},{i % 5},{i % 7},{(i % 2 == 0 ? 1 : 0)}\n")));
        File.WriteAllText(_dir["data/labels.csv"], csv);
        WriteConfig("cls.json", steps: 60, job: ", \"Task\": \"Classification\", \"Classes\": 2");
        var train = CliRunner.Run("train", "--config", _dir["cls.json"], "--PeftTraining:DataFile=data/labels.csv");
        Assert.True(train.ExitCode == 0, train.ToString());

        var result = CliRunner.Run("evaluate", "--config", _dir["cls.json"], "--adapter", _dir["run/adapters/default"], "--data", _dir["data/labels.csv"], "--json");
        Assert.True(result.ExitCode == 0, result.ToString());
        var json = JsonNode.Parse(result.Output)!;
        Assert.Equal(64, json["rows"]!.GetValue<long>());
        Assert.True(json["accuracy"]!.GetValue<double>() > 0.9, result.Output);
    }

    [Fact]
    public void Bad_settings_stop_before_training_with_exit_code_2_and_the_setting_named()
    {
        WriteConfig("bad.json", steps: 0);
        var bad = CliRunner.Run("train", "--config", _dir["bad.json"]);
        Assert.Equal(ExitCodes.UsageError, bad.ExitCode);
        Assert.Contains("PeftTraining:TotalSteps", bad.Error);
        Assert.False(Directory.Exists(_dir["run"]));

        WriteConfig("unknown.json", steps: 10, job: ", \"HiddenSise\": 8");
        var unknown = CliRunner.Run("train", "--config", _dir["unknown.json"]);
        Assert.Equal(ExitCodes.UsageError, unknown.ExitCode);
        Assert.Contains("HiddenSise", unknown.Error);

        WriteConfig("nodata.json", steps: 10, extraTraining: "");
        var noData = CliRunner.Run("train", "--config", _dir["nodata.json"], "--PeftTraining:DataFile=data/missing.csv");
        Assert.Equal(ExitCodes.UsageError, noData.ExitCode);
        Assert.Contains(_dir["data/missing.csv"], noData.Error);

        var noConfig = CliRunner.Run("train", "--config", _dir["missing.json"]);
        Assert.Equal(ExitCodes.UsageError, noConfig.ExitCode);
        Assert.Contains(_dir["missing.json"], noConfig.Error);

        var evaluateWithoutBase = CliRunner.Run("evaluate", "--config", _dir["appsettings.json"]);
        Assert.Equal(ExitCodes.UsageError, evaluateWithoutBase.ExitCode);
        Assert.Contains("base.safetensors", evaluateWithoutBase.Error);

        var twoModels = CliRunner.Run("evaluate", "--config", _dir["appsettings.json"], "--adapter", _dir.Path, "--weights", _dir["x"]);
        Assert.Equal(ExitCodes.UsageError, twoModels.ExitCode);
    }

    [Fact]
    public void A_bad_data_row_fails_the_run_with_exit_code_1_naming_file_and_line()
    {
        File.AppendAllText(_dir["data/train.csv"], "1,2,3,oops,5,6,7\n");
        var result = CliRunner.Run("train", "--config", _dir["appsettings.json"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains(_dir["data/train.csv"] + ", line 258, column 4: 'oops'", result.Error);
        Assert.Equal(TrainingRunState.Failed, TrainingRunStatus.Read(_dir["run"]).State);
    }
}
