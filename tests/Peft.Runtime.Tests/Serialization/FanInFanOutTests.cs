using System.Text.Json.Nodes;
using Peft.Serialization;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>A model whose checkpoints store <c>conv</c> as [in, out] (Hugging Face Conv1D) and <c>linear</c> as nn.Linear.</summary>
public sealed partial class HalfConv1DModel : Module<Tensor, Tensor>, IFanInFanOutLayers
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> conv = Linear(8, 8);
    [LoRA(rank: 2), LoRA(rank: 2, Name = "mixed")] private Module<Tensor, Tensor> linear = Linear(8, 8);

    public HalfConv1DModel() : base(nameof(HalfConv1DModel)) => InitializePeft();

    public bool IsFanInFanOut(string layerPath) => layerPath == "conv";

    public override Tensor forward(Tensor x) => linear.call(conv.call(x));
}

/// <summary><c>fan_in_fan_out</c>: written and accepted exactly where the model declares Conv1D layers.</summary>
public sealed class FanInFanOutTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-fifo-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void AnAdapterOverConv1DAndLinearLayersIsRefusedOnSave()
    {
        using var model = new HalfConv1DModel();
        var ex = Assert.Throws<PeftConfigurationException>(() => AdapterFiles.Save(model, _dir));
        Assert.Contains("Conv1D: conv", ex.Message);
        Assert.Contains("(linear)", ex.Message);
        Assert.False(Directory.Exists(_dir));
    }

    [Fact]
    public void TheFlagIsRefusedOnLayersTheModelDoesNotDeclare()
    {
        // "mixed" sits on the nn.Linear layer only: saved with fan_in_fan_out false; forcing it true is refused by name.
        using var model = new HalfConv1DModel();
        AdapterFiles.Save(model, _dir, "mixed");
        string config = Path.Combine(_dir, AdapterFiles.ConfigFileName);
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        Assert.False((bool)json["fan_in_fan_out"]!);
        json["fan_in_fan_out"] = true;
        File.WriteAllText(config, json.ToJsonString());
        using var fresh = new HalfConv1DModel();
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, _dir, "mixed"));
        Assert.Contains("stored [out, in]", ex.Message);
        Assert.Contains("linear", ex.Message);
    }
}
