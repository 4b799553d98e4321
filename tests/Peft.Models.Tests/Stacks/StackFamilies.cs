using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Stacks;

/// <summary>A small model of each family with a transformer stack, and one forward of it, for the stack-level tests.</summary>
internal static class StackFamilies
{
    /// <summary>The families.</summary>
    public static IEnumerable<object[]> All => new[] { "llama", "gpt2", "bert", "uselite" }.Select(f => new object[] { f });

    /// <summary>A seeded model of the family.</summary>
    internal static nn.Module Create(string family)
    {
        switch (family)
        {
            case "llama": return TinyLlama.Create(5);
            case "gpt2": return TinyGpt2.Create(5, tie: false);
            case "bert": return TinyBert.Create(5);
            default:
                manual_seed(5);
                var encoder = new UseLiteEncoder();
                encoder.eval();
                return encoder;
        }
    }

    /// <summary>The model's output on two fixed sequences of four tokens.</summary>
    internal static Tensor Run(string family, nn.Module model)
    {
        var ids = torch.tensor(new long[] { 1, 5, 9, 2, 7, 3, 3, 8 }, new long[] { 2, 4 });
        return family switch
        {
            "llama" => ((LlamaForCausalLM)model).call(ids),
            "gpt2" => ((Gpt2LMHeadModel)model).call(ids),
            "bert" => ((BertForSequenceClassification)model).call(ids),
            _ => ((UseLiteEncoder)model).call(ids, torch.ones(2, 4, dtype: ScalarType.Bool)),
        };
    }
}
