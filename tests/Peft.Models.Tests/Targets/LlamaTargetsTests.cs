using Peft.Models.Llama;
using Peft.Models.Tests.Llama;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Targets;

/// <summary>Configuration targeting (target_modules, "all-linear", exclude_modules) on the tiny Llama (2 layers).</summary>
public sealed class LlamaTargetsTests
{
    private static readonly string[] Attention = { "q_proj", "k_proj", "v_proj", "o_proj" };
    private static readonly string[] Mlp = { "gate_proj", "up_proj", "down_proj" };

    private static IEnumerable<string> Expected(IEnumerable<int> layers, IEnumerable<string> names)
        => layers.SelectMany(i => names.Select(n => $"model.layers.{i}.{(Attention.Contains(n) ? "self_attn" : "mlp")}.{n}"));

    private static PeftTargets Cfg(TargetModules targets, int rank = 4) => new(targets, new LoRAOptions(Rank: rank, Alpha: 8)) { AdapterName = "cfg" };

    [Fact]
    public void ListOfNamesMatchesEveryLinearOfLlama()
    {
        using var model = TinyLlama.Create(1);
        var names = Attention.Concat(Mlp).ToArray();
        var adapted = model.ApplyTargets(Cfg(TargetModules.Names(names)));
        Assert.Equal(Expected(new[] { 0, 1 }, names).OrderBy(n => n), adapted.OrderBy(n => n));
        foreach (var path in adapted)
        {
            var layer = model.AdaptedLayers().Single(l => l.Path == path).Layer;
            Assert.True(layer.HasAdapter("cfg"));
        }
        // The mlp's members really hold the wrapper now (the forward goes through it) and keep their state-dict names.
        Assert.Contains("model.layers.0.mlp.gate_proj.cfg.lora_A.weight", model.state_dict().Keys);
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", model.state_dict().Keys);
    }

    [Fact]
    public void AllLinearLeavesOutLmHead()
    {
        using var model = TinyLlama.Create(1);
        var resolved = model.ResolveTargets(Cfg(TargetModules.AllLinear)).Selected;
        Assert.Equal(Expected(new[] { 0, 1 }, Attention.Concat(Mlp)).OrderBy(n => n), resolved.OrderBy(n => n));
        Assert.DoesNotContain("lm_head", resolved);
    }

    [Fact]
    public void SuffixesRegexAndExcludeFollowPeft()
    {
        using var model = TinyLlama.Create(1);
        Assert.Equal(new[] { "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj" },
            model.ResolveTargets(Cfg(TargetModules.Names("self_attn.q_proj"))).Selected);
        Assert.Equal(new[] { "model.layers.0.mlp.up_proj" },
            model.ResolveTargets(Cfg(TargetModules.Names("layers.0.mlp.up_proj"))).Selected);
        // "proj" is not a suffix after a dot of any name: it matches nothing (PEFT: no partial segments).
        Assert.Throws<PeftConfigurationException>(() => model.ResolveTargets(Cfg(TargetModules.Names("proj"))));
        // A regex must match the whole name.
        Assert.Equal(new[] { "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj" },
            model.ResolveTargets(Cfg(TargetModules.Regex(@".*\.layers\.1\.self_attn\.(q|k)_proj"))).Selected);
        Assert.Throws<PeftConfigurationException>(() => model.ResolveTargets(Cfg(TargetModules.Regex("q_proj"))));
        // exclude_modules removes from any selection.
        var excluded = model.ResolveTargets(Cfg(TargetModules.AllLinear) with { Exclude = TargetModules.Names("mlp.down_proj", "layers.0.self_attn.o_proj") }).Selected;
        Assert.Equal(11, excluded.Count);
        Assert.DoesNotContain("model.layers.1.mlp.down_proj", excluded);
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj", excluded);
        Assert.Contains("model.layers.1.self_attn.o_proj", excluded);
        var regexExcluded = model.ResolveTargets(Cfg(TargetModules.AllLinear) with { Exclude = TargetModules.Regex(@".*\.mlp\..*") }).Selected;
        Assert.Equal(Expected(new[] { 0, 1 }, Attention).OrderBy(n => n), regexExcluded.OrderBy(n => n));
    }

    [Fact]
    public void UnknownNameIsAnErrorWithSuggestionAndNothingChanges()
    {
        using var model = TinyLlama.Create(1);
        int before = model.AdaptedLayers().Count();
        var ex = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(Cfg(TargetModules.Names("q_proj", "k_prj"))));
        Assert.Contains("'k_prj' matches no module of LlamaForCausalLM", ex.Message);
        Assert.Contains("Did you mean 'k_proj'", ex.Message);
        Assert.Contains("Linear modules: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head", ex.Message);
        Assert.Contains("Nothing was changed", ex.Message);
        Assert.Equal(before, model.AdaptedLayers().Count());
        Assert.DoesNotContain("cfg", model.AdapterNames());
    }

    [Fact]
    public void NonLinearLayersAndExclusionTyposAreErrors()
    {
        using var model = TinyLlama.Create(1);
        var nonLinear = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(Cfg(TargetModules.Names("mlp"))));
        Assert.Contains("'model.layers.0.mlp' (LlamaMlp)", nonLinear.Message);
        Assert.Contains("not a linear layer", nonLinear.Message);

        // The output head is left out of "all-linear" (AllLinearLeavesOutLmHead) but can be named, as in PEFT; tied, it is no layer.
        Assert.Equal(new[] { "lm_head" }, model.ResolveTargets(Cfg(TargetModules.Names("lm_head"))).Selected);
        using (var tied = TinyLlama.Create(1, tie: true))
        {
            var head = Assert.Throws<PeftConfigurationException>(() => tied.ResolveTargets(Cfg(TargetModules.Names("lm_head"))));
            Assert.Contains("'lm_head' matches no module", head.Message);
        }

        var excludeTypo = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(Cfg(TargetModules.AllLinear) with { Exclude = TargetModules.Names("down_prj") }));
        Assert.Contains("exclude_modules entry 'down_prj'", excludeTypo.Message);
        Assert.Contains("Did you mean 'down_proj'", excludeTypo.Message);
    }

    [Fact]
    public void SameAdapterNameTwiceIsAnErrorNamingTheFirst()
    {
        using var model = TinyLlama.CreateWithLoRA(1);
        var ex = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(new PeftTargets(TargetModules.Names("q_proj", "k_proj"))));
        Assert.Contains("'model.layers.0.self_attn.q_proj' already has an adapter named 'default' (a LoRA adapter added earlier)", ex.Message);
        Assert.DoesNotContain("k_proj' already", ex.Message);
        Assert.DoesNotContain(model.AdaptedLayers(), l => l.Path.EndsWith("k_proj", StringComparison.Ordinal));
    }

    [Fact]
    public void TargetedLoRAFollowsTheFormulaMergesAndUnmerges()
    {
        using var model = TinyLlama.Create(3);
        using var ids = TinyLlama.RandomIds(5, 2, 6);
        using var baseOut = model.forward(ids);

        model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 4, Alpha: 8)));
        using (var initOut = model.forward(ids))
        {
            Assert.True(TinyLlama.BitwiseEqual(baseOut, initOut), "LoRA starts with B = 0: the forward equals the base");
        }

        manual_seed(11);
        using (no_grad())
        {
            foreach (var (_, layer) in model.AdaptedLayers())
            {
                ((LoRAAdapter)layer.GetAdapter("default")).B.normal_(0, 0.05);
            }
        }

        // One layer against y = W x + s·B A x.
        var down = model.AdaptedLayers().Single(l => l.Path == "model.layers.1.mlp.down_proj").Layer;
        var lora = (LoRAAdapter)down.GetAdapter("default");
        using (no_grad())
        {
            using var x = randn(3, down.InFeatures);
            using var y = down.forward(x);
            using var expected = x.matmul(down.Weight.t()) + 2.0 * x.matmul(lora.A.t()).matmul(lora.B.t());
            Assert.True(y.allclose(expected, rtol: 1e-5, atol: 1e-6));
        }

        using var adaptedOut = model.forward(ids);
        Assert.False(adaptedOut.allclose(baseOut, rtol: 1e-4, atol: 1e-5));
        model.Merge();
        using (var mergedOut = model.forward(ids))
        {
            Assert.True(mergedOut.allclose(adaptedOut, rtol: 1e-4, atol: 1e-5));
        }
        model.Unmerge();
        using (no_grad())
        using (model.DisableAdapters())
        using (var restored = model.forward(ids))
        {
            Assert.True(restored.allclose(baseOut, rtol: 1e-5, atol: 1e-5));
        }
    }

    [Fact]
    public void TrainableParameterCountMatchesTheFormula()
    {
        using var model = TinyLlama.Create(1);
        const int r = 4;
        model.ApplyTargets(new PeftTargets(TargetModules.Names(Attention.Concat(Mlp)), new LoRAOptions(Rank: r, Alpha: 8)));
        // hidden 32, intermediate 48, 4 heads x 8, 2 kv heads: q 32->32, k 32->16, v 32->16, o 32->32, gate/up 32->48, down 48->32.
        long perLayer = r * ((32 + 32) + (32 + 16) + (32 + 16) + (32 + 32) + (32 + 48) + (32 + 48) + (48 + 32));
        var summary = model.GetTrainableSummary();
        Assert.Equal(2 * perLayer, summary.TrainableParameters);
        Assert.Equal(model.parameters().Sum(p => p.numel()), summary.AllParameters);
        Assert.All(model.named_parameters().Where(p => !p.name.Contains(".default.", StringComparison.Ordinal)), p => Assert.False(p.parameter.requires_grad, p.name));
    }

    [Fact]
    public void RankAndAlphaPatternsOverridePerModule()
    {
        using var model = TinyLlama.Create(1);
        model.ApplyTargets(Cfg(TargetModules.Names("gate_proj", "down_proj")) with
        {
            RankPattern = new Dictionary<string, int> { ["layers.1.mlp.down_proj"] = 2 },
            AlphaPattern = new Dictionary<string, double> { ["gate_proj"] = 32 },
        });
        var layers = model.AdaptedLayers().Where(l => l.Layer.HasAdapter("cfg")).ToDictionary(l => l.Path, l => (LoRAOptions)l.Layer.GetAdapter("cfg").Config);
        Assert.Equal(2, layers["model.layers.1.mlp.down_proj"].Rank);
        Assert.Equal(4, layers["model.layers.0.mlp.down_proj"].Rank);
        Assert.Equal(32, layers["model.layers.0.mlp.gate_proj"].Alpha);
        Assert.Equal(8, layers["model.layers.0.mlp.down_proj"].Alpha);
    }

    [Fact]
    public void AdapterTrainedOnQkvoLoadsIntoLlamaThatHasLoRAOnQv()
    {
        string dir = TinyLlama.TempDir("targets-qkvo");
        try
        {
            using var ids = TinyLlama.RandomIds(7, 1, 5);
            Tensor expected;
            using (var trained = TinyLlama.CreateWithLoRA(1))
            {
                // q/v have "default" (r 8, alpha 16) from LlamaTargets.LoRA; k/o get the same adapter by a second configuration.
                trained.ApplyTargets(new PeftTargets(TargetModules.Names("k_proj", "o_proj"), new LoRAOptions(Rank: 8, Alpha: 16)));
                manual_seed(2);
                using (no_grad())
                {
                    foreach (var (_, layer) in trained.AdaptedLayers()) ((LoRAAdapter)layer.GetAdapter("default")).B.normal_(0, 0.05);
                }
                AdapterFiles.Save(trained, dir);
                expected = trained.forward(ids);
            }

            var config = AdapterConfig.Read(Path.Combine(dir, AdapterFiles.ConfigFileName));
            Assert.Equal(new[] { "k_proj", "o_proj", "q_proj", "v_proj" }, config.TargetModules.OrderBy(n => n));

            // A model that already has "default" on q/v only: the plain loader has no place for k/o, refuses and
            // leaves the model as it was.
            using (var plain = TinyLlama.CreateWithLoRA(1))
            {
                Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(plain, dir));
            }

            // LoadAdapterWithTargets adds what it lacks from the file's target_modules.
            using (var withQv = TinyLlama.CreateWithLoRA(1))
            {
                var result = withQv.LoadAdapterWithTargets(dir);
                Assert.Equal(16, result.LoadedTensors);
                using var actual = withQv.forward(ids);
                Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6));
            }

            // The stock model without adapters: AdapterFiles.Load creates all four from the file, as PEFT's from_pretrained.
            using (var stock = TinyLlama.Create(1))
            {
                var result = AdapterFiles.Load(stock, dir);
                Assert.Equal(16, result.LoadedTensors);
                using var actual = stock.forward(ids);
                Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6));
            }

            expected.Dispose();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AdapterConfigWhoseTargetsAllMissFailsBeforeAnyChange()
    {
        string dir = TinyLlama.TempDir("targets-typo");
        try
        {
            File.WriteAllText(Path.Combine(dir, AdapterFiles.ConfigFileName),
                """{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_prj", "o_prj"]}""");
            File.WriteAllBytes(Path.Combine(dir, AdapterFiles.WeightsFileName), Array.Empty<byte>());
            using var model = TinyLlama.Create(1);
            var before = model.state_dict().Keys.ToList();
            var ex = Assert.Throws<PeftConfigurationException>(() => model.LoadAdapterWithTargets(dir));
            Assert.Contains("'o_prj'", ex.Message);
            Assert.Contains("Did you mean 'o_proj'", ex.Message);
            Assert.Equal(before, model.state_dict().Keys.ToList());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void LayersToTransformRestrictsNameAndAllLinearSelections()
    {
        using var model = TinyLlama.Create(1);
        var onlyLayer1 = Cfg(TargetModules.Names("q_proj", "down_proj")) with { LayersToTransform = new[] { 1 }, LayersPattern = new[] { "layers" } };
        Assert.Equal(new[] { "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj" }, model.ResolveTargets(onlyLayer1).Selected);
        var allLinear = Cfg(TargetModules.AllLinear) with { LayersToTransform = new[] { 0 } };
        Assert.Equal(Expected(new[] { 0 }, Attention.Concat(Mlp)).OrderBy(n => n), model.ResolveTargets(allLinear).Selected.OrderBy(n => n));
        var none = Assert.Throws<PeftConfigurationException>(() => model.ResolveTargets(onlyLayer1 with { LayersToTransform = new[] { 5 } }));
        Assert.Contains("selects nothing in layers_to_transform [5]", none.Message);
    }

    [Fact]
    public void PlainAdapterFilesLoadCreatesANewAdapterOnEveryTargetedLayerIncludingPlainLinears()
    {
        // A PEFT adapter named "cfg" on q,k,v,o of layer 1 only (layers_to_transform), loaded into a stock model whose
        // members are plain Linear layers: AdapterFiles.Load creates the adapter through targeting.
        string dir = TinyLlama.TempDir("targets-load-new");
        try
        {
            using var ids = TinyLlama.RandomIds(9, 1, 5);
            Tensor expected;
            using (var trained = TinyLlama.Create(1))
            {
                trained.ApplyTargets(Cfg(TargetModules.Names(Attention)) with { LayersToTransform = new[] { 1 } });
                trained.SetActiveAdapter("cfg");
                manual_seed(3);
                using (no_grad())
                {
                    foreach (var (_, layer) in trained.AdaptedLayers().Where(l => l.Layer.HasAdapter("cfg"))) ((LoRAAdapter)layer.GetAdapter("cfg")).B.normal_(0, 0.05);
                }
                AdapterFiles.Save(trained, dir, "cfg");
                expected = trained.forward(ids);
            }

            // Saved with the layer paths (layer 0 has no such adapter), so write PEFT's compact form by hand.
            var configPath = Path.Combine(dir, AdapterFiles.ConfigFileName);
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            json["target_modules"] = new System.Text.Json.Nodes.JsonArray("q_proj", "k_proj", "v_proj", "o_proj");
            json["layers_to_transform"] = new System.Text.Json.Nodes.JsonArray(1);
            json["layers_pattern"] = "layers";
            File.WriteAllText(configPath, json.ToJsonString());

            using var fresh = TinyLlama.Create(1);
            var result = AdapterFiles.Load(fresh, dir, "cfg");
            Assert.Equal(8, result.LoadedTensors);
            Assert.Equal(new[] { "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.self_attn.o_proj" },
                fresh.AdaptedLayers().Where(l => l.Layer.HasAdapter("cfg")).Select(l => l.Path));
            fresh.SetActiveAdapter("cfg");
            using var actual = fresh.forward(ids);
            Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6));
            expected.Dispose();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
