using Peft.Text;

namespace Peft.Text.Tests;

[Collection(Gpt2Collection.Name)]
public sealed class CausalLmDataTests(Gpt2Fixture gpt2)
{
    [Fact]
    public void BlocksShiftLabelsByOneAndDropTheTail()
    {
        int[] tokens = Enumerable.Range(100, 10).ToArray(); // 100..109
        var blocks = CausalLmData.Blocks(tokens, blockSize: 4);
        Assert.Equal(2, blocks.Count); // windows of 5 at 0 and 4; the one at 8 lacks tokens
        Assert.Equal([100, 101, 102, 103], blocks[0].InputIds);
        Assert.Equal([101, 102, 103, 104], blocks[0].TokenLabels!);
        Assert.Equal([104, 105, 106, 107], blocks[1].InputIds);
        Assert.Equal([105, 106, 107, 108], blocks[1].TokenLabels!);
    }

    [Fact]
    public void StrideOverlapsWindows()
    {
        var blocks = CausalLmData.Blocks(Enumerable.Range(0, 8).ToArray(), blockSize: 4, stride: 1);
        Assert.Equal(4, blocks.Count); // starts 0..3
        Assert.Equal([3, 4, 5, 6], blocks[3].InputIds);
        Assert.Equal([4, 5, 6, 7], blocks[3].TokenLabels!);
    }

    [Fact]
    public void BlocksFromTextSeparateDocuments()
    {
        var blocks = CausalLmData.BlocksFromText(gpt2.Tokenizer, ["Hello world", "this is a test."], blockSize: 3, separatorId: Gpt2TokenizerFiles.EndOfTextId);
        // Stream: 15496 995 50256 5661 318 257 1332 13 50256 ("this" at a document start has no leading space).
        var stream = blocks.SelectMany(b => b.InputIds).Append(blocks[^1].TokenLabels![^1]).ToArray();
        Assert.Equal([15496, 995, 50256, 5661, 318, 257, 1332], stream);
    }

    [Fact]
    public void PromptCompletionMasksPromptTargets()
    {
        var example = new PromptCompletionExample("Hello world,", " this is a test.");
        var e = CausalLmData.PromptCompletion(gpt2.Tokenizer, example, maxLength: 64, endOfTextId: Gpt2TokenizerFiles.EndOfTextId);
        // Sequence: 15496 995 11 | 428 318 257 1332 13 | 50256
        Assert.Equal([15496, 995, 11, 428, 318, 257, 1332, 13], e.InputIds);
        Assert.Equal([-100, -100, 428, 318, 257, 1332, 13, 50256], e.TokenLabels!);

        var full = CausalLmData.PromptCompletion(gpt2.Tokenizer, example, maxLength: 64, endOfTextId: null, completionOnlyLoss: false);
        Assert.Equal([995, 11, 428, 318, 257, 1332, 13], full.TokenLabels!);
    }

    [Fact]
    public void PromptCompletionTruncationKeepsPromptEndAndCompletionStart()
    {
        var example = new PromptCompletionExample("Hello world,", " this is a test.");
        var e = CausalLmData.PromptCompletion(gpt2.Tokenizer, example, maxLength: 4, endOfTextId: Gpt2TokenizerFiles.EndOfTextId);
        // Capacity 5: completion keeps its first 4 (428 318 257 1332), prompt its last 1 (11).
        Assert.Equal([11, 428, 318, 257], e.InputIds);
        Assert.Equal([428, 318, 257, 1332], e.TokenLabels!);
    }

    [Fact]
    public void EmptyCompletionWithoutEndOfTextIsRejected()
    {
        Assert.Throws<ArgumentException>(() => CausalLmData.PromptCompletion(gpt2.Tokenizer, new PromptCompletionExample("Hi", ""), maxLength: 8));
    }

    [Fact]
    public void ClassificationTruncatesAndKeepsLabel()
    {
        var e = CausalLmData.Classification(gpt2.Tokenizer, new TextLabelExample("Hello world, this is a test.", 1), maxLength: 3);
        Assert.Equal([15496, 995, 11], e.InputIds);
        Assert.Equal(1, e.ClassLabel);
        Assert.Null(e.TokenLabels);
    }
}
