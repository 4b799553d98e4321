using System.Collections.Immutable;
using Peft.Generators.Methods.LoRA;
using Peft.Generators.Model;

namespace Peft.Generators.Methods.DoRA;

/// <summary><c>[DoRA(rank, alpha, dropout, UseRsLora, Init)]</c> → <c>Peft.DoRAOptions</c>; LoRA's arguments and rules
/// (PEFT0001-0004; PEFT0021 for Init = PiSSA, OLoRA, LoftQ, EVA or CorDA, which DoRA does not support), r·(in + out) + out parameters (the magnitude is one per output row).</summary>
internal sealed class DoRASpec : MethodSpec
{
    public override string Name => "DoRA";

    public override string OptionsType => "global::Peft.DoRAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = LowRankSpec.Arguments;

    public override void Validate(ValidationContext context)
    {
        LowRankSpec.Validate(context);
        int init = context.Adapter.Int("Init");
        if (init is LowRankSpec.PiSSA or LowRankSpec.OLoRA or LoRASpec.LoftQ or LoRASpec.CorDA)
        {
            context.Report(LoRASpec.InitArgumentsId, "Init", Name, context.Member.Name,
                "Init = LoRAInit." + (init == LowRankSpec.PiSSA ? "PiSSA" : init == LowRankSpec.OLoRA ? "OLoRA" : init == LoRASpec.LoftQ ? "LoftQ" : "CorDA") + " rewrites the base weight, which is supported for [LoRA] only; use [LoRA(..., Init = ...)] or another Init");
        }
        else if (init == LoRASpec.Eva)
        {
            context.Report(LoRASpec.InitArgumentsId, "Init", Name, context.Member.Name,
                "Init = LoRAInit.EVA (InitializeEva sets A from the layer inputs' principal components and may change the rank) is supported for [LoRA] only; use [LoRA(..., Init = LoRAInit.EVA)] or another Init");
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.DoRARules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"));
}
