using System.Text.Json.Nodes;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Targets;

/// <summary>ApplyTargets on a small tree: Kronecker, unreachable layers, readonly members, ordering, rollback.</summary>
public sealed class ApplyTargetsTests
{
    [Fact]
    public void AllLinearCoversReachableLayersAndReportsTheOthers()
    {
        using var model = new TargetRoot();
        var ex = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(new PeftTargets(TargetModules.AllLinear) { AdapterName = "all" }));
        // lm_head is the output head (left out); the ModuleList elements and the readonly member are reported, not skipped.
        Assert.Contains("3 problems", ex.Message);
        Assert.Contains("'block.heads.0' is a linear layer but cannot be targeted: it is element '0' of a ModuleList", ex.Message);
        Assert.Contains("'block.heads.1'", ex.Message);
        Assert.Contains("'attributed.frozenProj' is a linear layer but cannot be targeted: member 'frozenProj' is a readonly field", ex.Message);
        Assert.DoesNotContain("lm_head", ex.Message);
        Assert.Single(model.AdaptedLayers()); // only the [LoRA] one from the attribute

        var adapted = model.ApplyTargets(new PeftTargets(TargetModules.AllLinear) { AdapterName = "all", Exclude = TargetModules.Regex(@"block\.heads\..*|.*frozenProj") });
        Assert.Equal(new[] { "block.fc1", "block.fc2", "attributed.proj" }, adapted);
    }

    [Fact]
    public void KroneckerTargetsKeepRegistrationOrderAndTrainOnlyAdapters()
    {
        using var model = new TargetRoot();
        var order = model.Block.named_children().Select(c => c.name).ToList();
        using var x = randn(4, 8);
        using var before = model.forward(x);

        model.ApplyTargets(new PeftTargets(TargetModules.Names("fc1", "fc2"), new KroneckerOptions(Rank: 2, Alpha: 4)) { AdapterName = "lokr" });

        Assert.Equal(order, model.Block.named_children().Select(c => c.name));
        var layers = model.AdaptedLayers().ToDictionary(l => l.Path, l => l.Layer);
        Assert.IsType<KroneckerAdapter>(layers["block.fc1"].GetAdapter("lokr"));
        Assert.IsType<KroneckerAdapter>(layers["block.fc2"].GetAdapter("lokr"));
        using (var after = model.forward(x))
        {
            Assert.True(after.allclose(before, rtol: 0, atol: 0), "LoKr starts with ΔW = 0");
        }
        // Trainable: the attribute's LoRA on attributed.proj (active) and both LoKr adapters (first on their layers).
        long expected = layers["block.fc1"].GetAdapter("lokr").TrainableParameterCount
            + layers["block.fc2"].GetAdapter("lokr").TrainableParameterCount
            + 2 * (8 + 8);
        Assert.Equal(expected, model.GetTrainableSummary().TrainableParameters);
        Assert.All(model.named_parameters().Where(p => !p.name.Contains(".lokr.", StringComparison.Ordinal) && !p.name.Contains(".default.", StringComparison.Ordinal)),
            p => Assert.False(p.parameter.requires_grad, p.name));
    }

    [Fact]
    public void EveryProblemIsListedAndNothingChanges()
    {
        using var model = new TargetRoot();
        var before = model.state_dict().Keys.ToList();
        var ex = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(
            new PeftTargets(TargetModules.Names("fc1", "fc3", "norm", "proj")) { AdapterName = "default" }));
        Assert.Contains("target_modules entry 'fc3' matches no module of TargetRoot. Did you mean 'fc1' or 'fc2'?", ex.Message);
        Assert.Contains("'block.norm' (LayerNorm), which is not a linear layer", ex.Message);
        Assert.Contains("'attributed.proj' already has an adapter named 'default' (declared by [LoRA] on Peft.Runtime.Tests.Targets.AttributedBlock.proj)", ex.Message);
        Assert.Contains("Linear modules: fc1, fc2, 0, 1, proj, frozenProj, lm_head.", ex.Message);
        Assert.Equal(before, model.state_dict().Keys.ToList());
    }

    [Fact]
    public void ReplaceChildKeepsTheOrderOfLaterChildren()
    {
        using var parent = new ThreeChildren();
        using var replacement = nn.Linear(2, 2);
        PeftTargeting.ReplaceChild(parent, "a", replacement);
        Assert.Equal(new[] { "a", "b", "c" }, parent.named_children().Select(c => c.name));
        Assert.Same(replacement, parent.named_children().First().module);
        Assert.Equal(new[] { "a.weight", "a.bias", "b.inner.weight", "b.inner.bias", "c.weight", "c.bias" }, parent.state_dict().Keys);
    }

    /// <summary>A child that registers its fields with TorchSharp's RegisterComponents(); re-registering it must not fail.</summary>
    private sealed class ReflectionRegistered : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> inner = nn.Linear(2, 2);

        public ReflectionRegistered() : base(nameof(ReflectionRegistered)) => RegisterComponents();

        public override Tensor forward(Tensor x) => inner.call(x);
    }

    private sealed class ThreeChildren : nn.Module
    {
        public ThreeChildren() : base(nameof(ThreeChildren))
        {
            register_module("a", nn.Linear(2, 2));
            register_module("b", new ReflectionRegistered());
            register_module("c", nn.Linear(2, 2));
        }
    }

    [Fact]
    public void FailedWeightLoadRemovesTheAddedAdapters()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-targets-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            using (var source = new TargetRoot())
            {
                source.ApplyTargets(new PeftTargets(TargetModules.Names("fc1", "fc2"), new LoRAOptions(Rank: 2)) { AdapterName = "x" });
                AdapterFiles.Save(source, dir, "x");
            }
            // Break the weights: a valid config, a file with the wrong tensors.
            using (var other = new TargetRoot())
            {
                other.ApplyTargets(new PeftTargets(TargetModules.Names("fc1"), new LoRAOptions(Rank: 2)) { AdapterName = "x" });
                AdapterFiles.Save(other, Path.Combine(dir, "wrong"), "x");
            }
            File.Copy(Path.Combine(dir, "wrong", AdapterFiles.WeightsFileName), Path.Combine(dir, AdapterFiles.WeightsFileName), overwrite: true);

            using var model = new TargetRoot();
            var grads = model.parameters().Select(p => p.requires_grad).ToList();
            Assert.Throws<TensorMismatchException>(() => model.LoadAdapterWithTargets(dir, "x"));
            Assert.DoesNotContain("x", model.AdapterNames());
            Assert.Equal(grads, model.parameters().Select(p => p.requires_grad).ToList());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void LayersUnderAFrozenMemberAreAnErrorAndAllLinearLeavesFrozenAndTrainableSubtreesOut()
    {
        using var model = new FreezeAndTrainRoot();
        // all-linear: only proj; encoder.* (frozen) and head.* (trained whole) are left out, as their members are.
        Assert.Equal(new[] { "proj" }, model.ResolveTargets(new PeftTargets(TargetModules.AllLinear) { AdapterName = "x" }).Selected);

        // Named explicitly, a layer inside the [Freeze] encoder would never train: an error, not a dead adapter.
        var ex = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(new PeftTargets(TargetModules.Names("encoder.fc1")) { AdapterName = "x" }));
        Assert.Contains("'encoder.fc1' is marked [Freeze]", ex.Message);
        Assert.DoesNotContain("x", model.AdapterNames());
    }

    [Fact]
    public void AFileListWithEntriesForOtherArchitecturesLoadsAsInPeftButAnAllUnknownListFails()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-targets-" + Guid.NewGuid().ToString("N"));
        try
        {
            Tensor expected;
            using var x = randn(3, 8);
            using (var source = Seeded())
            {
                source.ApplyTargets(new PeftTargets(TargetModules.Names("fc1"), new LoRAOptions(Rank: 2)) { AdapterName = "x" });
                source.SetActiveAdapter("x");
                using (no_grad())
                {
                    foreach (var (_, layer) in source.AdaptedLayers().Where(l => l.Layer.HasAdapter("x"))) ((LoRAAdapter)layer.GetAdapter("x")).B.normal_(0, 0.1);
                }
                expected = source.call(x);
                AdapterFiles.Save(source, dir, "x");
            }

            // PEFT users write lists for several architectures; PEFT skips the names a model lacks, and so do files here.
            // PEFT writes init_lora_weights: false for adapters made without init; loading does not care.
            EditConfig(dir, c =>
            {
                c["target_modules"] = new JsonArray("fc1", "query", "q_proj");
                c["init_lora_weights"] = false;
            });
            using (var model = Seeded())
            {
                model.LoadAdapterWithTargets(dir, "x");
                model.SetActiveAdapter("x");
                using var actual = model.call(x);
                Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6));
            }
            using (var model = Seeded())
            {
                AdapterFiles.Load(model, dir, "x");   // the plain loader creates the adapter the same way
                model.SetActiveAdapter("x");
                using var actual = model.call(x);
                Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6));
            }

            // Written in code, the same list is an error (PEFT's issue #1959 is a misspelling that hides this way).
            using (var model = Seeded())
            {
                var ex = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(new PeftTargets(TargetModules.Names("fc1", "query")) { AdapterName = "y" }));
                Assert.Contains("'query' matches no module", ex.Message);
            }

            // A file list none of whose names exist still fails, naming them.
            EditConfig(dir, c => c["target_modules"] = new JsonArray("query", "key"));
            using (var model = Seeded())
            {
                var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, dir, "x"));
                Assert.Contains("'query' matches no module", ex.Message);
                Assert.Contains("'key' matches no module", ex.Message);
            }
            expected.Dispose();
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AnExactFullNameIsNotFilteredByLayersToTransform()
    {
        using var model = new TargetRoot();
        var targets = new PeftTargets(TargetModules.Names("block.heads.0", "fc1")) { AdapterName = "x", LayersToTransform = new[] { 7 } };
        // "block.heads.0" is not targetable (inside a ModuleList), so resolve reports it: it was selected despite the filter.
        var ex = Assert.Throws<PeftConfigurationException>(() => model.ResolveTargets(targets));
        Assert.Contains("'block.heads.0' is a linear layer but cannot be targeted", ex.Message);
        Assert.DoesNotContain("'block.fc1'", ex.Message);
    }

    // Same base weights in every instance: the adapter is all that differs.
    private static TargetRoot Seeded()
    {
        manual_seed(17);
        return new TargetRoot();
    }

    private static void EditConfig(string dir, Action<JsonObject> edit)
    {
        string path = Path.Combine(dir, AdapterFiles.ConfigFileName);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }
}
