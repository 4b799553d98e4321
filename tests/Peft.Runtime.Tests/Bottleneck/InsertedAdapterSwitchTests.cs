using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Bottleneck;

/// <summary>The model-level adapter switches (<c>SetActiveAdapter</c>, <c>DisableAdapters</c>, <c>AdapterNames</c>,
/// <c>DeleteAdapter</c>) act on inserted bottleneck adapters as on layer adapters.</summary>
public sealed class InsertedAdapterSwitchTests
{
    private static UserStack TwoAdapters(out Tensor baseOutput)
    {
        var model = new UserStack(5);
        using var ids = UserStack.Ids();
        using (torch.no_grad()) baseOutput = model.call(ids).detach();
        model.AddBottleneckAdapters(BottleneckConfig.Pfeiffer() with { ReductionFactor = 2, InitWeights = BottleneckConfig.BertInit }, "a");
        model.AddBottleneckAdapters(BottleneckConfig.Houlsby() with { ReductionFactor = 2, InitWeights = BottleneckConfig.BertInit }, "b");
        return model;
    }

    private static Tensor Output(UserStack model)
    {
        using var ids = UserStack.Ids();
        using var noGrad = torch.no_grad();
        return model.call(ids).detach();
    }

    [Fact]
    public void SetActiveAdapterRunsAndTrainsOnlyTheNamedInsertedAdapters()
    {
        using var model = TwoAdapters(out var plain);
        using var both = Output(model);
        Assert.Equal(new[] { "a", "b" }, model.AdapterNames());

        model.SetActiveAdapter("a");
        Assert.All(model.InsertedAdapters(), x => Assert.Equal(x.Adapter.AdapterName == "a", x.Adapter.Active));
        Assert.All(model.InsertedAdapters(), x => Assert.All(x.Adapter.parameters(), p => Assert.Equal(x.Adapter.AdapterName == "a", p.requires_grad)));
        using var onlyA = Output(model);
        TensorAssert.NotClose(both, onlyA, 1e-6);
        TensorAssert.NotClose(plain, onlyA, 1e-6);

        model.SetActiveAdapters("a", "b");
        using var again = Output(model);
        TensorAssert.Equal(both, again);
        plain.Dispose();
    }

    [Fact]
    public void DisableAdaptersGivesTheBaseModelAndRestoresTheInsertedAdapters()
    {
        using var model = TwoAdapters(out var plain);
        using var adapted = Output(model);
        using (model.DisableAdapters())
        {
            using var disabled = Output(model);
            TensorAssert.Equal(plain, disabled);
            Assert.All(model.InsertedAdapters(), x => Assert.False(x.Adapter.Active));
        }

        using var restored = Output(model);
        TensorAssert.Equal(adapted, restored);
        Assert.All(model.InsertedAdapters(), x => Assert.True(x.Adapter.Active));
        plain.Dispose();
    }

    [Fact]
    public void DeleteAdapterRemovesTheInsertedModulesByName()
    {
        using var model = TwoAdapters(out var plain);
        model.SetActiveAdapter("a");
        using var onlyA = Output(model);
        model.SetActiveAdapters("a", "b");

        model.DeleteAdapter("b");
        Assert.Equal(new[] { "a" }, model.AdapterNames());
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains(".adapters.b.", StringComparison.Ordinal));
        using var afterDelete = Output(model);
        TensorAssert.Equal(onlyA, afterDelete);

        var e = Assert.Throws<PeftConfigurationException>(() => model.DeleteAdapter("b"));
        Assert.Contains("'a'", e.Message);
        plain.Dispose();
    }
}
